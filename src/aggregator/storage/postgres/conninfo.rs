//! libpq's TLS keys in a connection string, which tokio-postgres does not take.
//!
//! Operators copy connection strings from libpq tools (`psql`, their database's
//! console), where a verified connection is written `sslmode=verify-full` or
//! `sslmode=verify-ca`, with the CA bundle in `sslrootcert` (PostgreSQL documentation,
//! libpq, "Parameter Key Words" and "SSL Support"). tokio-postgres knows only `disable`,
//! `prefer` and `require`, and refuses `sslrootcert` as an unknown option, and the client
//! certificate's `sslcert` and `sslkey` too. So those keys are taken out of the string
//! here, in either of libpq's two forms, and the rest is left byte for byte for
//! tokio-postgres to parse:
//!
//! - keyword/value: `host=db user=crigate sslmode=verify-full sslrootcert='/etc/ca.pem'`;
//!   spaces around `=` optional, a value single-quoted to hold spaces, `\'` and `\\`
//!   escaped with a backslash ("Keyword/Value Connection Strings");
//! - URI: `postgresql://crigate@db/crigate?sslmode=verify-full&sslrootcert=/etc/ca.pem`,
//!   parameters in the query, percent-encoded ("Connection URIs").

use std::borrow::Cow;
use std::path::PathBuf;

/// How the server's certificate is checked on a TLS connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verify {
    /// The chain to a trusted CA, and the server's name against the host connected to:
    /// `sslmode=verify-full`, and what crigate does for `sslmode=require` (where libpq
    /// would check nothing).
    Full,
    /// The chain to a trusted CA only: `sslmode=verify-ca`.
    Chain,
}

/// Where the CA bundle comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RootCert {
    File(PathBuf),
    /// `sslrootcert=system`: the system's trust store (libpq 16's special value).
    System,
}

/// A connection string with libpq's TLS keys taken out.
#[derive(Debug, PartialEq, Eq)]
pub struct ConnInfo {
    /// What tokio-postgres parses: the rest of the string, with `sslmode=require` in
    /// place of `verify-ca` or `verify-full`.
    pub rest: String,
    /// `Some` when the connection must be TLS.
    pub verify: Option<Verify>,
    /// `sslrootcert`, when given.
    pub root_cert: Option<RootCert>,
    /// `sslcert` and `sslkey`: the client certificate (PEM) and its key, presented to
    /// a server that authenticates clients by certificate.
    pub identity: Option<(PathBuf, PathBuf)>,
}

/// Why a connection string's TLS keys cannot be used. The connection string may hold a
/// password: a message names the key at fault, never the string.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Error {
    #[error("the connection string has an unterminated quoted value")]
    Unterminated,
    #[error("the connection string has text that is not a keyword=value pair at byte {0}")]
    NotAPair(usize),
    #[error("the connection string's {0} is not valid percent-encoded UTF-8")]
    Encoding(&'static str),
    #[error("the connection string sets {0} more than once")]
    Repeated(&'static str),
    #[error(
        "sslrootcert is given, but sslmode is not require, verify-ca or verify-full: \
         the connection would not use it"
    )]
    RootCertUnused,
    #[error("sslcert and sslkey go together: the client certificate and its key")]
    HalfIdentity,
    #[error(
        "sslcert is given, but sslmode is not require, verify-ca or verify-full: \
         the connection would not use it"
    )]
    IdentityUnused,
}

const SSLMODE: &str = "sslmode";
const SSLROOTCERT: &str = "sslrootcert";
const SSLCERT: &str = "sslcert";
const SSLKEY: &str = "sslkey";

/// Takes `sslmode` (when `verify-ca`, `verify-full` or `require`), `sslrootcert`,
/// `sslcert` and `sslkey` out of `conninfo`.
///
/// # Errors
///
/// The string is malformed where its keys are read, sets a key twice, names a
/// certificate that no TLS mode would use, or a client certificate without its key.
pub fn split(conninfo: &str) -> Result<ConnInfo, Error> {
    let uri = ["postgresql://", "postgres://"]
        .iter()
        .any(|scheme| conninfo.starts_with(scheme));
    let pairs = if uri {
        uri_pairs(conninfo)?
    } else {
        keyword_pairs(conninfo)?
    };
    let (mut mode, mut root_cert, mut cert, mut key) = (None, None, None, None);
    for pair in &pairs {
        let (slot, key) = match pair.key.as_ref() {
            SSLMODE => (&mut mode, SSLMODE),
            SSLROOTCERT => (&mut root_cert, SSLROOTCERT),
            SSLCERT => (&mut cert, SSLCERT),
            SSLKEY => (&mut key, SSLKEY),
            _ => continue,
        };
        if slot.replace(pair.value.as_ref()).is_some() {
            return Err(Error::Repeated(key));
        }
    }
    let verify = match mode {
        Some("verify-full" | "require") => Some(Verify::Full),
        Some("verify-ca") => Some(Verify::Chain),
        // `disable`, `prefer`, or a value tokio-postgres refuses by name: left to it.
        Some(_) | None => None,
    };
    let root_cert = root_cert.map(|value| match value {
        "system" => RootCert::System,
        path => RootCert::File(PathBuf::from(path)),
    });
    if root_cert.is_some() && verify.is_none() {
        return Err(Error::RootCertUnused);
    }
    let identity = match (cert, key) {
        (Some(cert), Some(key)) => Some((PathBuf::from(cert), PathBuf::from(key))),
        (None, None) => None,
        _ => return Err(Error::HalfIdentity),
    };
    if identity.is_some() && verify.is_none() {
        return Err(Error::IdentityUnused);
    }
    let mut kept: Vec<&str> = pairs
        .iter()
        .filter(|pair| match pair.key.as_ref() {
            SSLROOTCERT | SSLCERT | SSLKEY => false,
            SSLMODE => verify.is_none(),
            _ => true,
        })
        .map(|pair| pair.raw)
        .collect();
    if verify.is_some() {
        kept.push("sslmode=require");
    }
    let rest = if uri {
        let base = conninfo.split_once('?').map_or(conninfo, |(base, _)| base);
        if kept.is_empty() {
            base.to_owned()
        } else {
            format!("{base}?{}", kept.join("&"))
        }
    } else {
        kept.join(" ")
    };
    Ok(ConnInfo {
        rest,
        verify,
        root_cert,
        identity,
    })
}

/// One parameter: its keyword and decoded value, and its text as written.
struct Pair<'a> {
    key: Cow<'a, str>,
    value: Cow<'a, str>,
    raw: &'a str,
}

/// The parameters of a keyword/value string, in order.
fn keyword_pairs(conninfo: &str) -> Result<Vec<Pair<'_>>, Error> {
    let mut pairs = Vec::new();
    let mut rest = conninfo;
    loop {
        rest = rest.trim_start();
        if rest.is_empty() {
            return Ok(pairs);
        }
        let start = conninfo.len() - rest.len();
        let Some(eq) = rest.find('=') else {
            return Err(Error::NotAPair(start));
        };
        let (key, after) = rest.split_at(eq);
        let key = key.trim_end();
        if key.is_empty() || key.contains(char::is_whitespace) {
            return Err(Error::NotAPair(start));
        }
        let after = after.get(1..).unwrap_or_default().trim_start();
        let (value, remaining) = keyword_value(after)?;
        let end = conninfo.len() - remaining.len();
        pairs.push(Pair {
            key: Cow::Borrowed(key),
            value: Cow::Owned(value),
            raw: conninfo.get(start..end).unwrap_or_default(),
        });
        rest = remaining;
    }
}

/// A value at the start of `text`, unescaped, and what follows it.
fn keyword_value(text: &str) -> Result<(String, &str), Error> {
    let mut value = String::new();
    let quoted = text.starts_with('\'');
    let mut chars = text.char_indices().skip(usize::from(quoted));
    while let Some((at, c)) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some((_, escaped)) => value.push(escaped),
                None => return Err(Error::Unterminated),
            },
            '\'' if quoted => return Ok((value, text.get(at + 1..).unwrap_or_default())),
            c if !quoted && c.is_whitespace() => {
                return Ok((value, text.get(at..).unwrap_or_default()))
            }
            c => value.push(c),
        }
    }
    if quoted {
        return Err(Error::Unterminated);
    }
    Ok((value, ""))
}

/// The query parameters of a URI, in order.
fn uri_pairs(conninfo: &str) -> Result<Vec<Pair<'_>>, Error> {
    let Some((base, query)) = conninfo.split_once('?') else {
        return Ok(Vec::new());
    };
    let mut pairs = Vec::new();
    let mut at = base.len() + 1;
    for raw in query.split('&') {
        if !raw.is_empty() {
            let (key, value) = raw.split_once('=').ok_or(Error::NotAPair(at))?;
            pairs.push(Pair {
                key: decode(key, "parameter name")?,
                value: decode(value, "parameter value")?,
                raw,
            });
        }
        at += raw.len() + 1;
    }
    Ok(pairs)
}

fn decode<'a>(text: &'a str, what: &'static str) -> Result<Cow<'a, str>, Error> {
    percent_encoding::percent_decode_str(text)
        .decode_utf8()
        .map_err(|_| Error::Encoding(what))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(conninfo: &str) -> ConnInfo {
        split(conninfo).unwrap()
    }

    #[test]
    fn a_string_without_tls_keys_is_left_as_written() {
        for conninfo in [
            "host=/run/postgresql dbname=crigate user=crigate",
            r"host=db password='it\'s a secret' sslmode=disable",
            "postgresql://crigate:p%40ss@db:5432/crigate?application_name=crigate",
            "postgres://db/crigate",
        ] {
            let split = ok(conninfo);
            assert_eq!(split.verify, None, "{conninfo}");
            assert_eq!(split.root_cert, None);
            // Keyword strings come back with single spaces; tokio-postgres reads both alike.
            assert_eq!(
                split.rest.split_whitespace().collect::<Vec<_>>(),
                conninfo.split_whitespace().collect::<Vec<_>>()
            );
        }
    }

    #[test]
    fn verify_full_and_verify_ca_become_require_with_their_check() {
        let full = ok("host=db sslmode=verify-full user=crigate");
        assert_eq!(full.rest, "host=db user=crigate sslmode=require");
        assert_eq!(full.verify, Some(Verify::Full));
        let chain = ok("host = db  sslmode = 'verify-ca'");
        assert_eq!(chain.rest, "host = db sslmode=require");
        assert_eq!(chain.verify, Some(Verify::Chain));
        // `require` is verified in full: crigate never takes an unverified certificate.
        assert_eq!(ok("sslmode=require").verify, Some(Verify::Full));
        let uri = ok("postgresql://crigate@db/crigate?sslmode=verify-ca&connect_timeout=5");
        assert_eq!(
            uri.rest,
            "postgresql://crigate@db/crigate?connect_timeout=5&sslmode=require"
        );
        assert_eq!(uri.verify, Some(Verify::Chain));
    }

    #[test]
    fn sslrootcert_is_taken_out_decoded() {
        let keyword = ok(r"host=db sslmode=verify-full sslrootcert='/etc/pg ca/it\'s.pem'");
        assert_eq!(keyword.rest, "host=db sslmode=require");
        assert_eq!(
            keyword.root_cert,
            Some(RootCert::File("/etc/pg ca/it's.pem".into()))
        );
        let uri = ok("postgres://db/x?sslrootcert=%2Fetc%2Fca.pem&sslmode=verify-full");
        assert_eq!(uri.rest, "postgres://db/x?sslmode=require");
        assert_eq!(uri.root_cert, Some(RootCert::File("/etc/ca.pem".into())));
        let system = ok("sslmode=verify-full sslrootcert=system");
        assert_eq!(system.root_cert, Some(RootCert::System));
    }

    #[test]
    fn sslcert_and_sslkey_are_taken_out_together() {
        let split = ok("host=db sslcert=/c.pem sslmode=verify-full sslkey='/k ey.pem'");
        assert_eq!(split.rest, "host=db sslmode=require");
        assert_eq!(split.identity, Some(("/c.pem".into(), "/k ey.pem".into())));
        let uri = ok("postgres://db/x?sslkey=%2Fk.pem&sslmode=require&sslcert=%2Fc.pem");
        assert_eq!(uri.rest, "postgres://db/x?sslmode=require");
        assert_eq!(uri.identity, Some(("/c.pem".into(), "/k.pem".into())));
        assert_eq!(
            split_err("sslmode=require sslcert=/c.pem"),
            Error::HalfIdentity
        );
        assert_eq!(
            split_err("sslmode=require sslkey=/k.pem"),
            Error::HalfIdentity
        );
        assert_eq!(
            split_err("sslcert=/c.pem sslkey=/k.pem"),
            Error::IdentityUnused
        );
    }

    fn split_err(conninfo: &str) -> Error {
        split(conninfo).unwrap_err()
    }

    #[test]
    fn unusable_tls_keys_are_refused_by_name() {
        for (conninfo, error) in [
            ("host=db sslrootcert=/ca.pem", Error::RootCertUnused),
            (
                "sslmode=prefer sslrootcert=/ca.pem host=db",
                Error::RootCertUnused,
            ),
            ("sslmode=require sslmode=disable", Error::Repeated(SSLMODE)),
            (
                "postgres://db?sslrootcert=a&sslrootcert=b&sslmode=require",
                Error::Repeated(SSLROOTCERT),
            ),
            ("host=db password='secret", Error::Unterminated),
            ("host=db secret", Error::NotAPair(8)),
            ("host=db two words=x", Error::NotAPair(8)),
            ("postgres://db?sslmode=require&oops", Error::NotAPair(30)),
            (
                "postgres://db?sslrootcert=%ff",
                Error::Encoding("parameter value"),
            ),
        ] {
            assert_eq!(split(conninfo), Err(error), "{conninfo}");
        }
        // What crigate leaves to tokio-postgres stays in the string for it to refuse.
        assert_eq!(ok("sslmode=allow").rest, "sslmode=allow");
    }

    /// A keyword string of `pairs`, each value quoted when it must be.
    fn keyword_string(pairs: &[(&str, String)]) -> String {
        pairs
            .iter()
            .map(|(key, value)| {
                if value.is_empty() || value.contains([' ', '\'', '\\']) {
                    let escaped = value.replace('\\', "\\\\").replace('\'', "\\'");
                    format!("{key}='{escaped}'")
                } else {
                    format!("{key}={value}")
                }
            })
            .collect::<Vec<_>>()
            .join(" ")
    }

    proptest::proptest! {
        /// Strings of libpq keywords, the TLS ones among them: each is split or refused,
        /// and what is split keeps every other parameter's value and takes the TLS keys
        /// out, as the values written say.
        #[test]
        fn keyword_strings_split_as_their_pairs_say(
            pairs in proptest::collection::vec(
                (
                    proptest::sample::select(vec!["host", "dbname", "password", SSLMODE, SSLROOTCERT, SSLCERT, SSLKEY]),
                    proptest::sample::select(vec!["verify-ca", "verify-full", "require", "prefer", "system", "/etc/ca.pem", "a b", "it's", r"back\slash", ""]),
                ),
                0..6,
            ),
        ) {
            let pairs: Vec<(&str, String)> =
                pairs.into_iter().map(|(k, v)| (k, v.to_owned())).collect();
            let conninfo = keyword_string(&pairs);
            let value = |key: &str| pairs.iter().find(|(k, _)| *k == key).map(|(_, v)| v.as_str());
            let count = |key: &str| pairs.iter().filter(|(k, _)| *k == key).count();
            match split(&conninfo) {
                Ok(split) => {
                    proptest::prop_assert!([SSLMODE, SSLROOTCERT, SSLCERT, SSLKEY].iter().all(|k| count(k) <= 1));
                    let verify = match value(SSLMODE) {
                        Some("verify-full" | "require") => Some(Verify::Full),
                        Some("verify-ca") => Some(Verify::Chain),
                        _ => None,
                    };
                    proptest::prop_assert_eq!(split.verify, verify);
                    proptest::prop_assert_eq!(split.root_cert.is_some(), value(SSLROOTCERT).is_some());
                    proptest::prop_assert_eq!(split.identity.is_some(), value(SSLCERT).is_some());
                    // The rest holds every other pair, parsed back to the same values.
                    let kept: Vec<(String, String)> = keyword_pairs(&split.rest)
                        .unwrap()
                        .into_iter()
                        .map(|p| (p.key.into_owned(), p.value.into_owned()))
                        .collect();
                    let mut expected: Vec<(String, String)> = pairs
                        .iter()
                        .filter(|(k, _)| ![SSLROOTCERT, SSLCERT, SSLKEY].contains(k) && (*k != SSLMODE || verify.is_none()))
                        .map(|(k, v)| ((*k).to_owned(), v.clone()))
                        .collect();
                    if verify.is_some() {
                        expected.push((SSLMODE.to_owned(), "require".to_owned()));
                    }
                    proptest::prop_assert_eq!(kept, expected);
                }
                Err(Error::Repeated(_)) => {
                    proptest::prop_assert!([SSLMODE, SSLROOTCERT, SSLCERT, SSLKEY].iter().any(|k| count(k) > 1));
                }
                Err(Error::HalfIdentity) => {
                    proptest::prop_assert!(value(SSLCERT).is_some() != value(SSLKEY).is_some());
                }
                Err(Error::IdentityUnused) => {
                    proptest::prop_assert!(value(SSLCERT).is_some());
                }
                Err(Error::RootCertUnused) => {
                    proptest::prop_assert!(value(SSLROOTCERT).is_some());
                }
                Err(error) => proptest::prop_assert!(false, "{conninfo}: {error}"),
            }
        }

        #[test]
        fn arbitrary_strings_never_panic(conninfo in ".{0,64}") {
            let _ = split(&conninfo);
            let _ = split(&format!("postgres://db?{conninfo}"));
        }
    }

    #[test]
    fn no_message_repeats_the_string() {
        for conninfo in [
            "password='hunter2",
            "hunter2 password=x",
            "postgres://db?hunter2",
        ] {
            let error = split(conninfo).unwrap_err().to_string();
            assert!(!error.contains("hunter2"), "{error}");
        }
    }
}
