//! [`Postgres`]: a PostgreSQL 15 server (Debian's `postgresql` package) in a temp dir,
//! listening on a unix socket only, stopped on drop. The aggregator's tests and its
//! benchmark store records in it.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

use super::process::free_port;

/// Where Debian 12 installs PostgreSQL 15's server programs.
pub const PG_BIN: &str = "/usr/lib/postgresql/15/bin";

/// A private PostgreSQL server; its superuser `postgres` connects without a password.
pub struct Postgres {
    root: PathBuf,
    port: u16,
}

impl Postgres {
    /// Whether a server can be started here: the package installed, and root to run it
    /// as the `postgres` user.
    pub fn available() -> bool {
        Path::new(PG_BIN).join("initdb").exists()
            && nix::unistd::User::from_name("postgres")
                .ok()
                .flatten()
                .is_some()
            && nix::unistd::geteuid().is_root()
    }

    /// Initializes and starts a server under `dir`/pg with Debian's defaults.
    pub fn start(dir: &Path) -> Result<Self> {
        Self::start_with(dir, "")
    }

    /// As [`Postgres::start`], with extra server options (`-c name=value ...`).
    pub fn start_with(dir: &Path, options: &str) -> Result<Self> {
        use std::os::unix::fs::PermissionsExt;
        let root = dir.join("pg");
        std::fs::create_dir_all(&root)?;
        // The server runs as postgres: it must reach and own its directory.
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755))?;
        let user = nix::unistd::User::from_name("postgres")?
            .context("no postgres user: apt-get install postgresql (integration/setup)")?;
        nix::unistd::chown(&root, Some(user.uid), Some(user.gid))?;
        let port = free_port()?;
        let data = root.join("data");
        let data = data.to_str().context("non-UTF-8 temp dir")?;
        run_as_postgres(&[
            &format!("{PG_BIN}/initdb"),
            "-D",
            data,
            "-A",
            "trust",
            "-U",
            "postgres",
        ])?;
        let log = root.join("server.log");
        run_as_postgres(&[
            &format!("{PG_BIN}/pg_ctl"),
            "-D",
            data,
            "-l",
            log.to_str().context("non-UTF-8 temp dir")?,
            "-o",
            &format!(
                "-k {} -c listen_addresses='' -p {port} {options}",
                root.display()
            ),
            "-w",
            "start",
        ])?;
        Ok(Self { root, port })
    }

    /// A libpq connection string for `database` as the superuser.
    pub fn url_for(&self, database: &str) -> String {
        format!(
            "host={} port={} user=postgres dbname={database}",
            self.root.display(),
            self.port
        )
    }

    /// The connection string of the `postgres` database.
    pub fn url(&self) -> String {
        self.url_for("postgres")
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let _ = Command::new("runuser")
            .args(["-u", "postgres", "--"])
            .arg(format!("{PG_BIN}/pg_ctl"))
            .arg("-D")
            .arg(self.root.join("data"))
            .args(["-m", "immediate", "stop"])
            .output();
    }
}

fn run_as_postgres(args: &[&str]) -> Result<()> {
    let out = Command::new("runuser")
        .args(["-u", "postgres", "--"])
        .args(args)
        .output()
        .context("running runuser")?;
    if !out.status.success() {
        bail!(
            "{args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}
