//! Small OCI images built in memory: one gzip tar layer holding a static test binary, a config
//! and an OCI image manifest (OCI image spec v1.1, "Image Manifest" and "Image Configuration").
//!
//! The binary is a C program compiled once per process with `cc -static`. It is PID-1 safe and
//! has three modes, chosen by `argv[1]`:
//!
//! - none or `sleep`: sleep until SIGTERM or SIGINT, reaping children, then exit 0;
//! - `echo ARGS...`: print ARGS joined by spaces and a newline, exit 0;
//! - `exit CODE`: exit with CODE.
//!
//! It sits at `/pause` and, as a hard link to the same file, at `/bin/tool`.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::process::Command;
use std::sync::OnceLock;

use anyhow::{anyhow, bail, Context as _, Result};
use sha2::{Digest as _, Sha256};

/// `application/vnd.oci.image.manifest.v1+json`
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// `application/vnd.oci.image.index.v1+json`
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// `application/vnd.oci.image.config.v1+json`
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
/// `application/vnd.oci.image.layer.v1.tar+gzip`
pub const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";

/// An OCI image built in memory, ready to push. Two images with the same labels are
/// byte-identical (fixed timestamps), so their digests are equal; a label makes them differ.
#[derive(Clone, Debug)]
pub struct TestImage {
    config: Vec<u8>,
    config_digest: String,
    layer: Vec<u8>,
    layer_digest: String,
    diff_id: String,
    manifest: Vec<u8>,
    manifest_digest: String,
}

/// Options for a [`TestImage`]; see [`TestImage::builder`].
#[derive(Clone, Debug, Default)]
pub struct TestImageBuilder {
    labels: BTreeMap<String, String>,
    annotations: BTreeMap<String, String>,
}

/// `sha256:<hex>` of `bytes`.
pub fn sha256_digest(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// The static test binary (see the module docs), compiled on first use and kept in memory for
/// the rest of the process.
///
/// # Errors
///
/// When `cc` or a static libc (Debian `libc6-dev`) is missing, or the binary misbehaves.
pub fn tool_binary() -> Result<&'static [u8]> {
    static TOOL: OnceLock<std::result::Result<Vec<u8>, String>> = OnceLock::new();
    TOOL.get_or_init(|| compile_tool().map_err(|e| format!("{e:#}")))
        .as_deref()
        .map_err(|e| anyhow!("{e}"))
}

/// The one layer every test image shares (labels live in the config): built once per process,
/// since gzip and SHA-256 of the binary take a noticeable part of a second in a debug build.
struct Layer {
    gzip: Vec<u8>,
    digest: String,
    diff_id: String,
}

fn shared_layer() -> Result<&'static Layer> {
    static LAYER: OnceLock<std::result::Result<Layer, String>> = OnceLock::new();
    LAYER
        .get_or_init(|| {
            let build = || -> Result<Layer> {
                let tar = layer_tar(tool_binary()?).context("writing the test image layer tar")?;
                let gzip = gzip(&tar).context("compressing the test image layer")?;
                Ok(Layer {
                    digest: sha256_digest(&gzip),
                    diff_id: sha256_digest(&tar),
                    gzip,
                })
            };
            build().map_err(|e| format!("{e:#}"))
        })
        .as_ref()
        .map_err(|e| anyhow!("{e}"))
}

/// The OCI architecture name of the host (`amd64`, `arm64`, ...).
pub fn oci_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" if cfg!(target_endian = "little") => "ppc64le",
        "loongarch64" => "loong64",
        other => other,
    }
}

// === impl TestImage ===

impl TestImage {
    /// Starts building an image; `.build()` makes it.
    pub fn builder() -> TestImageBuilder {
        TestImageBuilder::default()
    }

    /// The image without labels.
    ///
    /// # Errors
    ///
    /// As [`TestImageBuilder::build`].
    pub fn plain() -> Result<Self> {
        Self::builder().build()
    }

    /// The config blob (JSON).
    pub fn config(&self) -> &[u8] {
        &self.config
    }

    /// `sha256:<hex>` of the config blob.
    pub fn config_digest(&self) -> &str {
        &self.config_digest
    }

    /// The layer blob (gzip tar).
    pub fn layer(&self) -> &[u8] {
        &self.layer
    }

    /// `sha256:<hex>` of the compressed layer blob.
    pub fn layer_digest(&self) -> &str {
        &self.layer_digest
    }

    /// `sha256:<hex>` of the uncompressed layer tar, as listed in the config's `rootfs.diff_ids`.
    pub fn diff_id(&self) -> &str {
        &self.diff_id
    }

    /// The image manifest (JSON, media type [`OCI_MANIFEST`]).
    pub fn manifest(&self) -> &[u8] {
        &self.manifest
    }

    /// `sha256:<hex>` of the manifest: the image digest a registry and containerd report.
    pub fn manifest_digest(&self) -> &str {
        &self.manifest_digest
    }

    /// Media type of [`TestImage::manifest`].
    pub fn manifest_media_type(&self) -> &'static str {
        OCI_MANIFEST
    }

    /// Size in bytes of the manifest, for descriptors that point at it.
    pub fn manifest_size(&self) -> usize {
        self.manifest.len()
    }
}

// === impl TestImageBuilder ===

impl TestImageBuilder {
    /// Adds a config label, `docker build --label` style: `"key=value"`, or `"key"` for an empty
    /// value. Images with different labels have different digests.
    pub fn label(mut self, label: &str) -> Self {
        let (key, value) = label.split_once('=').unwrap_or((label, ""));
        self.labels.insert(key.to_string(), value.to_string());
        self
    }

    /// Adds a manifest annotation, `"key=value"`.
    pub fn annotation(mut self, annotation: &str) -> Self {
        let (key, value) = annotation.split_once('=').unwrap_or((annotation, ""));
        self.annotations.insert(key.to_string(), value.to_string());
        self
    }

    /// Builds the layer, config and manifest.
    ///
    /// # Errors
    ///
    /// When the test binary cannot be compiled (see [`tool_binary`]) or the layer cannot be
    /// written.
    pub fn build(self) -> Result<TestImage> {
        let layer = shared_layer()?;
        let (layer, layer_digest, diff_id) = (
            layer.gzip.clone(),
            layer.digest.clone(),
            layer.diff_id.clone(),
        );

        let config = serde_json::to_vec(&serde_json::json!({
            "architecture": oci_arch(),
            "os": "linux",
            "config": {
                "Entrypoint": ["/pause"],
                "Env": ["PATH=/bin"],
                "Labels": self.labels,
            },
            "rootfs": { "type": "layers", "diff_ids": [diff_id] },
            "history": [{ "created_by": "crigate integration harness" }],
        }))?;
        let config_digest = sha256_digest(&config);

        let mut manifest = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {
                "mediaType": OCI_CONFIG,
                "digest": config_digest,
                "size": config.len(),
            },
            "layers": [{
                "mediaType": OCI_LAYER_GZIP,
                "digest": layer_digest,
                "size": layer.len(),
            }],
        });
        if !self.annotations.is_empty() {
            manifest["annotations"] = serde_json::json!(self.annotations);
        }
        let manifest = serde_json::to_vec(&manifest)?;
        let manifest_digest = sha256_digest(&manifest);

        Ok(TestImage {
            config,
            config_digest,
            layer,
            layer_digest,
            diff_id,
            manifest,
            manifest_digest,
        })
    }
}

// === the test binary ===

const TOOL_SOURCE: &str = r#"
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static volatile sig_atomic_t stopping = 0;

static void on_stop(int sig) { (void)sig; stopping = 1; }

static void on_child(int sig) {
    (void)sig;
    int saved = errno;
    while (waitpid(-1, NULL, WNOHANG) > 0) {}
    errno = saved;
}

static int sleep_until_signalled(void) {
    /* PID 1 gets no default signal actions: install handlers, and block the signals outside
       sigsuspend so none can arrive between the check and the wait. */
    sigset_t blocked, waiting;
    sigemptyset(&blocked);
    sigaddset(&blocked, SIGTERM);
    sigaddset(&blocked, SIGINT);
    sigaddset(&blocked, SIGCHLD);
    sigprocmask(SIG_BLOCK, &blocked, &waiting);
    sigdelset(&waiting, SIGTERM);
    sigdelset(&waiting, SIGINT);
    sigdelset(&waiting, SIGCHLD);

    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sigemptyset(&sa.sa_mask);
    sa.sa_handler = on_stop;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    sa.sa_handler = on_child;
    sa.sa_flags = SA_NOCLDSTOP;
    sigaction(SIGCHLD, &sa, NULL);

    while (!stopping) sigsuspend(&waiting);
    return 0;
}

int main(int argc, char **argv) {
    if (argc < 2 || strcmp(argv[1], "sleep") == 0) return sleep_until_signalled();
    if (strcmp(argv[1], "echo") == 0) {
        for (int i = 2; i < argc; i++) {
            if (i > 2) fputc(' ', stdout);
            fputs(argv[i], stdout);
        }
        fputc('\n', stdout);
        return fflush(stdout) == 0 ? 0 : 1;
    }
    if (strcmp(argv[1], "exit") == 0) return argc > 2 ? atoi(argv[2]) : 0;
    fprintf(stderr, "usage: %s [sleep | echo ARGS... | exit CODE]\n", argv[0]);
    return 2;
}
"#;

fn compile_tool() -> Result<Vec<u8>> {
    super::process::require(&["cc"], false)?;
    let dir = tempfile::Builder::new()
        .prefix("crigate-tool-")
        .tempdir()
        .context("creating a temp dir to compile the test binary")?;
    let source = dir.path().join("tool.c");
    let binary = dir.path().join("tool");
    std::fs::write(&source, TOOL_SOURCE)?;
    let output = Command::new("cc")
        .args(["-static", "-O2", "-o"])
        .arg(&binary)
        .arg(&source)
        .output()
        .context("running cc")?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let hint = if stderr.contains("cannot find -lc") {
            " (no static libc: install the Debian package libc6-dev, as `.ci/run` does)"
        } else {
            ""
        };
        bail!(
            "compiling the test binary with `cc -static -O2` failed{hint}: {}\n{stderr}",
            output.status
        );
    }

    // The binary must do what the images promise before any test relies on it.
    let echoed = Command::new(&binary)
        .args(["echo", "harness", "ok"])
        .output()
        .context("running the freshly compiled test binary")?;
    if echoed.stdout != b"harness ok\n" || !echoed.status.success() {
        bail!(
            "the compiled test binary misbehaves: `tool echo harness ok` gave {:?} ({})",
            String::from_utf8_lossy(&echoed.stdout),
            echoed.status
        );
    }
    std::fs::read(&binary).context("reading the compiled test binary")
}

fn layer_tar(binary: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut tar = tar::Builder::new(Vec::new());

    let mut dir = tar::Header::new_ustar();
    dir.set_entry_type(tar::EntryType::Directory);
    dir.set_mode(0o755);
    dir.set_size(0);
    dir.set_mtime(0);
    dir.set_uid(0);
    dir.set_gid(0);
    tar.append_data(&mut dir, "bin/", std::io::empty())?;

    let mut file = tar::Header::new_ustar();
    file.set_entry_type(tar::EntryType::Regular);
    file.set_mode(0o755);
    file.set_size(binary.len() as u64);
    file.set_mtime(0);
    file.set_uid(0);
    file.set_gid(0);
    tar.append_data(&mut file, "pause", binary)?;

    let mut link = tar::Header::new_ustar();
    link.set_entry_type(tar::EntryType::Link);
    link.set_mode(0o755);
    link.set_size(0);
    link.set_mtime(0);
    link.set_uid(0);
    link.set_gid(0);
    tar.append_link(&mut link, "bin/tool", "pause")?;

    tar.into_inner()
}

fn gzip(bytes: &[u8]) -> std::io::Result<Vec<u8>> {
    // A fixed header mtime (0) keeps the digest stable across runs.
    let mut encoder = flate2::GzBuilder::new()
        .mtime(0)
        .write(Vec::new(), flate2::Compression::default());
    encoder.write_all(bytes)?;
    encoder.finish()
}
