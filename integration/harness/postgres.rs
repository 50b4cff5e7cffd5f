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

    /// As [`Postgres::start`], also listening on 127.0.0.1 for TLS connections only
    /// (`hostssl`; a TCP connection without TLS is rejected), with the server
    /// certificate and key in `cert` and `key` (PEM).
    pub fn start_tls(dir: &Path, cert: &Path, key: &Path) -> Result<Self> {
        Self::start_inner(dir, "", Some((cert, key)), None)
    }

    /// As [`Postgres::start_tls`], authenticating TCP clients by certificate instead:
    /// each must present one from `client_ca` whose common name is the user it logs in
    /// as (`pg_hba.conf` method `cert`).
    pub fn start_tls_client_certs(
        dir: &Path,
        cert: &Path,
        key: &Path,
        client_ca: &Path,
    ) -> Result<Self> {
        Self::start_inner(dir, "", Some((cert, key)), Some(client_ca))
    }

    /// As [`Postgres::start`], with extra server options (`-c name=value ...`).
    pub fn start_with(dir: &Path, options: &str) -> Result<Self> {
        Self::start_inner(dir, options, None, None)
    }

    fn start_inner(
        dir: &Path,
        options: &str,
        tls: Option<(&Path, &Path)>,
        client_ca: Option<&Path>,
    ) -> Result<Self> {
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
        let mut options = options.to_owned();
        let mut listen = String::new();
        if let Some((cert, key)) = tls {
            // The server reads its key only if the postgres user owns it, mode 0600.
            for (from, name) in [(cert, "server.crt"), (key, "server.key")] {
                let to = root.join(name);
                std::fs::copy(from, &to)?;
                nix::unistd::chown(&to, Some(user.uid), Some(user.gid))?;
                std::fs::set_permissions(&to, std::fs::Permissions::from_mode(0o600))?;
            }
            let method = match client_ca {
                Some(client_ca) => {
                    let to = root.join("client-ca.crt");
                    std::fs::copy(client_ca, &to)?;
                    nix::unistd::chown(&to, Some(user.uid), Some(user.gid))?;
                    options.push_str(&format!(" -c ssl_ca_file={}", to.display()));
                    "cert"
                }
                None => "trust",
            };
            let hba = Path::new(data).join("pg_hba.conf");
            let rest = std::fs::read_to_string(&hba)?;
            std::fs::write(
                &hba,
                format!(
                    "hostssl all all 127.0.0.1/32 {method}\nhostnossl all all 127.0.0.1/32 reject\n{rest}"
                ),
            )?;
            options.push_str(&format!(
                " -c ssl=on -c ssl_cert_file={} -c ssl_key_file={}",
                root.join("server.crt").display(),
                root.join("server.key").display()
            ));
            listen.push_str("127.0.0.1");
        }
        let log = root.join("server.log");
        run_as_postgres(&[
            &format!("{PG_BIN}/pg_ctl"),
            "-D",
            data,
            "-l",
            log.to_str().context("non-UTF-8 temp dir")?,
            "-o",
            &format!(
                "-k {} -c listen_addresses='{listen}' -p {port} {options}",
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

    /// A connection string for `database` as the superuser over TCP and TLS
    /// (`sslmode=require`), for a server started with [`Postgres::start_tls`].
    pub fn tls_url_for(&self, database: &str) -> String {
        format!(
            "host=127.0.0.1 port={} user=postgres dbname={database} sslmode=require",
            self.port
        )
    }

    /// Restarts the server with a fast shutdown, which closes every connection; it comes
    /// back on the same port with the same options.
    pub fn restart(&self) -> Result<()> {
        let data = self.root.join("data");
        let log = self.root.join("server.log");
        run_as_postgres(&[
            &format!("{PG_BIN}/pg_ctl"),
            "-D",
            data.to_str().context("non-UTF-8 temp dir")?,
            "-l",
            log.to_str().context("non-UTF-8 temp dir")?,
            "-m",
            "fast",
            "-w",
            "restart",
        ])
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
