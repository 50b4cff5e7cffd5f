//! `crigate audit query`: search the cluster aggregator's audit records.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context};
use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Limited};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde::Serialize;
use zeroize::Zeroizing;

use crate::aggregator::query::{RecordJson, RecordsPage, FORMAT_VERSION, RECORDS_PATH};
use crate::audit::{printable, DecisionKind};

use super::EXIT_OK;

/// Records asked for per page (the endpoint's maximum).
const PAGE_SIZE: usize = 1000;
/// Largest page body read: 1000 records of a few hundred bytes each, with room.
const MAX_PAGE_BYTES: usize = 32 * 1024 * 1024;
/// Largest token file read.
const MAX_TOKEN_BYTES: u64 = 4096;
/// Time for each page's request, connection included.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// List the aggregator's audit records that match every filter given, following
    /// all pages, oldest first.
    Query(QueryArgs),
}

#[derive(Debug, clap::Args)]
#[command(after_help = "Exit codes: 0 success (even with no records), 2 error.")]
pub struct QueryArgs {
    /// The aggregator's query endpoint, `https://host:port`.
    #[arg(long, value_name = "URL", value_parser = parse_https_url)]
    pub aggregator: url::Url,
    /// A file holding the bearer token (the aggregator's `token_file`).
    #[arg(long, value_name = "FILE")]
    pub token_file: Option<PathBuf>,
    /// CA bundle (PEM) the aggregator's certificate chains to. Default: the system's.
    #[arg(long, value_name = "FILE")]
    pub ca_file: Option<PathBuf>,
    /// Only records of this age or younger: `30m`, `1h`, `7d`.
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub since: Option<Duration>,
    /// Only records older than this: `10m`, `1d` (with --since, a window).
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub until: Option<Duration>,
    /// Only this decision: allow, deny, audit-deny, error, or unspecified (a kind the
    /// aggregator did not know when it stored the record).
    #[arg(long, value_parser = parse_decision)]
    pub decision: Option<DecisionKind>,
    /// Only the record with this id: the audit id a denial names.
    #[arg(long, value_name = "ID")]
    pub id: Option<String>,
    /// Only this Kubernetes namespace.
    #[arg(long, value_name = "NS")]
    pub namespace: Option<String>,
    /// Only this node.
    #[arg(long, value_name = "NODE")]
    pub node: Option<String>,
    /// Only images (as sent, or resolved) containing this text.
    #[arg(long, value_name = "PATTERN")]
    pub image: Option<String>,
    /// `table` for people; `json` for programs: one document, `{"version": 1,
    /// "records": [...]}`, each record as the aggregator's JSON format.
    #[arg(long, value_enum, default_value_t = Output::Table)]
    pub output: Output,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Output {
    Table,
    Json,
}

/// The `--output json` document.
#[derive(Serialize)]
struct Report<'a> {
    version: u32,
    records: &'a [RecordJson],
}

/// Runs `crigate audit`.
///
/// # Errors
///
/// The token cannot be read, the aggregator cannot be reached or refuses the query.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    match args.command {
        Command::Query(args) => query(args),
    }
}

fn query(args: QueryArgs) -> anyhow::Result<ExitCode> {
    let token = args.token_file.as_deref().map(read_token).transpose()?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let records = runtime.block_on(fetch_all(&args, token.as_deref().map(String::as_str)))?;
    print(&records, args.output)?;
    Ok(ExitCode::from(EXIT_OK))
}

/// Follows every page of the query.
async fn fetch_all(args: &QueryArgs, token: Option<&str>) -> anyhow::Result<Vec<RecordJson>> {
    // hyper-rustls sets ALPN (http/1.1) itself.
    let tls =
        crate::audit::tls::server_client_config(args.ca_file.as_deref()).with_context(|| {
            args.ca_file.as_ref().map_or_else(
                || "the system's trust store".to_owned(),
                |f| format!("--ca-file {}", f.display()),
            )
        })?;
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_only()
        .enable_http1()
        .build();
    let client: Client<_, Empty<Bytes>> = Client::builder(TokioExecutor::new()).build(https);
    let now = SystemTime::now();
    let ago = |ago: Duration| {
        let at = now
            .checked_sub(ago)
            .unwrap_or(UNIX_EPOCH)
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        i64::try_from(at.as_nanos()).unwrap_or(i64::MAX)
    };
    let since = args.since.map(ago);
    let until = args.until.map(ago);
    let mut records = Vec::new();
    let mut page_token: Option<String> = None;
    loop {
        let mut url = args.aggregator.clone();
        url.set_path(RECORDS_PATH);
        {
            let mut query = url.query_pairs_mut();
            query.clear();
            query.append_pair("limit", &PAGE_SIZE.to_string());
            if let Some(since) = since {
                query.append_pair("since", &since.to_string());
            }
            if let Some(until) = until {
                query.append_pair("until", &until.to_string());
            }
            if let Some(decision) = args.decision {
                query.append_pair("decision", decision.code());
            }
            for (key, value) in [
                ("id", &args.id),
                ("namespace", &args.namespace),
                ("node", &args.node),
                ("image", &args.image),
                ("page_token", &page_token),
            ] {
                if let Some(value) = value {
                    query.append_pair(key, value);
                }
            }
        }
        let mut request = http::Request::get(url.as_str());
        if let Some(token) = token {
            request = request.header(http::header::AUTHORIZATION, format!("Bearer {token}"));
        }
        let request = request.body(Empty::new())?;
        let response = tokio::time::timeout(REQUEST_TIMEOUT, client.request(request))
            .await
            .with_context(|| {
                format!(
                    "{} did not answer within {REQUEST_TIMEOUT:?}",
                    args.aggregator
                )
            })?
            .with_context(|| format!("cannot reach the aggregator at {}", args.aggregator))?;
        let status = response.status();
        let body = Limited::new(response.into_body(), MAX_PAGE_BYTES)
            .collect()
            .await
            .map_err(|e| anyhow::anyhow!("reading the answer: {e}"))?
            .to_bytes();
        if status == http::StatusCode::UNAUTHORIZED {
            bail!("the aggregator refused the query (401): pass its token with --token-file");
        }
        if !status.is_success() {
            let message = serde_json::from_slice::<serde_json::Value>(&body)
                .ok()
                .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(str::to_owned))
                .unwrap_or_default();
            bail!("the aggregator refused the query ({status}): {message}");
        }
        let page: RecordsPage = serde_json::from_slice(&body)
            .context("the aggregator's answer is not a records page")?;
        records.extend(page.records);
        match page.next_page_token {
            Some(next) if Some(&next) != page_token.as_ref() => page_token = Some(next),
            _ => break,
        }
    }
    Ok(records)
}

fn print(records: &[RecordJson], output: Output) -> anyhow::Result<()> {
    let text = match output {
        Output::Json => {
            let mut text = serde_json::to_string_pretty(&Report {
                version: FORMAT_VERSION,
                records,
            })?;
            text.push('\n');
            text
        }
        Output::Table => table(records),
    };
    match std::io::stdout().lock().write_all(text.as_bytes()) {
        // A closed pipe (`| head`) ends the command quietly.
        Err(error) if error.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => other.context("cannot write to stdout"),
    }
}

/// The widest a table cell is shown; the JSON output holds every value whole.
const MAX_CELL_CHARS: usize = 96;

/// `text` as a table shows it: [`printable`], so that a value a node sent cannot move
/// the cursor, recolour or rewrite the responder's terminal, and cut at
/// [`MAX_CELL_CHARS`] with `…`, so that one long value does not push the other columns
/// off every row.
fn cell(text: &str) -> String {
    let text = printable(text);
    if text.chars().count() <= MAX_CELL_CHARS {
        return text.into_owned();
    }
    let mut cut: String = text.chars().take(MAX_CELL_CHARS - 1).collect();
    cut.push('…');
    cut
}

fn table(records: &[RecordJson]) -> String {
    let rows: Vec<[String; 9]> = records
        .iter()
        .map(|r| {
            let time = UNIX_EPOCH
                + Duration::from_nanos(u64::try_from(r.time_unix_nanos).unwrap_or_default());
            let mut image = if r.subject.is_empty() {
                r.image.clone()
            } else {
                r.subject.clone()
            };
            if !r.volume_path.is_empty() {
                image = format!("{image} (image volume at {})", r.volume_path);
            }
            [
                humantime::format_rfc3339_seconds(time).to_string(),
                r.node.clone(),
                r.decision.clone(),
                r.action.clone(),
                r.phase.clone(),
                r.namespace.clone(),
                image,
                r.reason_code.clone(),
                r.id.clone(),
            ]
            .map(|text| cell(&text))
        })
        .collect();
    let header = [
        "TIME",
        "NODE",
        "DECISION",
        "ACTION",
        "PHASE",
        "NAMESPACE",
        "IMAGE",
        "REASON",
        "ID",
    ];
    let mut widths = header.map(str::len);
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cells: &[&str]| {
        let mut text = String::new();
        for (cell, width) in cells.iter().zip(widths) {
            text.push_str(&format!("{cell:<width$}  "));
        }
        out.push_str(text.trim_end());
        out.push('\n');
    };
    line(&header);
    for row in &rows {
        line(&row.each_ref().map(String::as_str));
    }
    out
}

fn read_token(path: &std::path::Path) -> anyhow::Result<Zeroizing<String>> {
    use std::io::Read;
    let file = std::fs::File::open(path)
        .with_context(|| format!("cannot read --token-file {}", path.display()))?;
    let mut raw = Zeroizing::new(String::new());
    file.take(MAX_TOKEN_BYTES + 1)
        .read_to_string(&mut raw)
        .with_context(|| format!("cannot read --token-file {}", path.display()))?;
    let token = Zeroizing::new(raw.trim().to_owned());
    if token.is_empty() || raw.len() as u64 > MAX_TOKEN_BYTES {
        bail!("--token-file {} is empty or too large", path.display());
    }
    Ok(token)
}

fn parse_decision(value: &str) -> Result<DecisionKind, String> {
    DecisionKind::from_code(value)
        .ok_or_else(|| "expected allow, deny, audit-deny, error or unspecified".to_owned())
}

fn parse_https_url(value: &str) -> Result<url::Url, String> {
    let url = url::Url::parse(value).map_err(|e| e.to_string())?;
    if url.scheme() != "https" || url.host().is_none() {
        return Err("expected https://host:port".to_owned());
    }
    Ok(url)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_table_escapes_control_characters_a_node_sent() {
        let record = RecordJson {
            node: "node-1".to_owned(),
            namespace: "prod\u{1b}[2J".to_owned(),
            image: "registry.example/app:v1\r\nforged line".to_owned(),
            ..RecordJson::default()
        };
        let text = table(&[record]);
        assert!(!text.contains('\u{1b}') && !text.contains('\r'), "{text:?}");
        assert!(text.contains("prod\\u{1b}[2J"), "{text}");
        assert!(text.contains("app:v1\\u{d}\\u{a}forged line"), "{text}");
        // One header and one row.
        assert_eq!(text.lines().count(), 2, "{text}");
    }

    #[test]
    fn a_table_hides_no_reordering_and_cuts_long_values_but_not_the_id() {
        let record = RecordJson {
            id: "0190b2d4-5f6e-7a8b-9c0d-1e2f3a4b5c6d".to_owned(),
            decision: "deny".to_owned(),
            action: "refuse".to_owned(),
            namespace: "prod\u{202e}ved".to_owned(),
            image: format!("registry.example/{}", "a".repeat(500)),
            reason_code: "no_signature".to_owned(),
            ..RecordJson::default()
        };
        let text = table(&[record]);
        assert!(text.contains("prod\\u{202e}ved"), "{text}");
        let row = text.lines().nth(1).unwrap();
        assert!(
            row.contains(&format!("registry.example/{}…", "a".repeat(78))),
            "{row}"
        );
        assert!(!row.contains(&"a".repeat(80)), "{row}");
        assert!(row.contains("deny      refuse"), "{row}");
        assert!(
            row.ends_with("no_signature  0190b2d4-5f6e-7a8b-9c0d-1e2f3a4b5c6d"),
            "{row}"
        );
    }
}
