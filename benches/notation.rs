//! Cold Notation verification against the floor of the signature checks it needs,
//! measured in one run:
//!
//! - cold: `crigate::verify::notation::verify` on one envelope whose bytes, target
//!   descriptor and configuration (trust policy and trust store, loaded once) are
//!   already in memory; nothing is cached between calls;
//! - primitives: the public-key operations that verification cannot avoid, done with
//!   aws-lc-rs: the envelope signature, each link of the envelope's chain (leaf by its
//!   issuer, the root by itself), and for a timestamped envelope the TSA's signature over
//!   the token's signed attributes and each link of the TSA chain up to the trusted
//!   `tsa` certificate.
//!
//! Cases are third-party vectors from `../shared/vectors` (MANIFEST.md, cases.json):
//! N10 (JWS, self-signed RSA-2048), N11a (COSE, same signer), N13a (JWS PS384, RSA-3072
//! leaf and root CA), N20 and N21 (JWS and COSE, RFC 3161 timestamp from a GlobalSign
//! TSA chain). Reports medians per call and the ratio cold / primitives (target <= 1.5),
//! then each primitive's own median, alone, with aws-lc-rs (what `verify::notation::crypto`
//! uses) and with the pure-Rust `rsa` crate (its fallback for RSASSA-PSS salts other than
//! the hash length), to show what each costs.
//!
//! Run: `cargo bench --bench notation`. `CRIGATE_BENCH_RUNS` sets the number of runs
//! (median taken, default 9) and `CRIGATE_BENCH_RUN_MS` the length of one run (default
//! 200 ms); `CRIGATE_BENCH_CASES=N13a,N20` runs only the cases named.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::disallowed_methods
)]

use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use aws_lc_rs::signature::{self, UnparsedPublicKey, VerificationAlgorithm};
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use cms::cert::CertificateChoices;
use cms::content_info::ContentInfo;
use cms::signed_data::SignedData;
use der::{Decode, Encode};
use serde_json::Value;
use x509_cert::Certificate;

use crigate::oci::{Descriptor, Digest};
use crigate::verify::notation::time::Moment;
use crigate::verify::notation::{verify, NotationConfig, TrustPolicyDocument};
use crigate::verify::Verdict;

const CASES: &[&str] = &["N10", "N11a", "N13a", "N20", "N21"];
const REPOSITORY: &str = "registry.example.com/app";
/// Target ratio of cold verification over the sum of its primitive checks.
const TARGET_RATIO: f64 = 1.5;

/// An RSA signature scheme and its hash, to run a primitive also with the `rsa` crate.
#[derive(Clone, Copy)]
enum Scheme {
    Pss(Hash),
    Pkcs1(Hash),
}

#[derive(Clone, Copy)]
enum Hash {
    Sha256,
    Sha384,
    Sha512,
}

/// The DigestInfo prefixes of RSASSA-PKCS1-v1_5 (RFC 8017 9.2, note 1).
const SHA256_DIGEST_INFO: &[u8] = &[
    0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01, 0x05,
    0x00, 0x04, 0x20,
];
const SHA384_DIGEST_INFO: &[u8] = &[
    0x30, 0x41, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x02, 0x05,
    0x00, 0x04, 0x30,
];
const SHA512_DIGEST_INFO: &[u8] = &[
    0x30, 0x51, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x03, 0x05,
    0x00, 0x04, 0x40,
];

impl Hash {
    fn digest(self, data: &[u8]) -> Vec<u8> {
        use sha2::Digest as _;
        match self {
            Self::Sha256 => sha2::Sha256::digest(data).to_vec(),
            Self::Sha384 => sha2::Sha384::digest(data).to_vec(),
            Self::Sha512 => sha2::Sha512::digest(data).to_vec(),
        }
    }
}

/// One public-key verification, with everything it needs already extracted.
struct Primitive {
    label: String,
    scheme: Scheme,
    algorithm: &'static dyn VerificationAlgorithm,
    /// PKCS#1 `RSAPublicKey` for RSA, the SEC1 point for ECDSA.
    key: Vec<u8>,
    message: Vec<u8>,
    signature: Vec<u8>,
}

impl Primitive {
    fn verify(&self) -> bool {
        UnparsedPublicKey::new(self.algorithm, &self.key)
            .verify(&self.message, &self.signature)
            .is_ok()
    }

    /// The same check with the pure-Rust `rsa` crate, `verify::notation::crypto`'s
    /// fallback for RSASSA-PSS salts other than the hash length: key parsed from PKCS#1,
    /// message hashed, then verified.
    fn verify_rsa_crate(&self) -> bool {
        use rsa::pkcs1::DecodeRsaPublicKey as _;
        let key = rsa::PublicKey::from_pkcs1_der(&self.key).unwrap();
        match self.scheme {
            Scheme::Pss(hash) => {
                let digest = hash.digest(&self.message);
                match hash {
                    Hash::Sha256 => key.verify(
                        rsa::Pss::<sha2::Sha256>::new_with_salt(32),
                        &digest,
                        &self.signature,
                    ),
                    Hash::Sha384 => key.verify(
                        rsa::Pss::<sha2::Sha384>::new_with_salt(48),
                        &digest,
                        &self.signature,
                    ),
                    Hash::Sha512 => key.verify(
                        rsa::Pss::<sha2::Sha512>::new_with_salt(64),
                        &digest,
                        &self.signature,
                    ),
                }
                .is_ok()
            }
            Scheme::Pkcs1(hash) => {
                let (prefix, len) = match hash {
                    Hash::Sha256 => (SHA256_DIGEST_INFO, 32),
                    Hash::Sha384 => (SHA384_DIGEST_INFO, 48),
                    Hash::Sha512 => (SHA512_DIGEST_INFO, 64),
                };
                let scheme = rsa::Pkcs1v15Sign {
                    hash_len: Some(len),
                    prefix: prefix.into(),
                };
                key.verify(scheme, &hash.digest(&self.message), &self.signature)
                    .is_ok()
            }
        }
    }
}

struct Case {
    id: String,
    description: String,
    media_type: String,
    envelope: Vec<u8>,
    target: Descriptor,
    config: NotationConfig,
    now: SystemTime,
    primitives: Vec<Primitive>,
}

impl Case {
    fn verify_cold(&self) -> bool {
        let envelopes = [(self.media_type.as_str(), self.envelope.as_slice())];
        let result = verify(
            black_box(&envelopes),
            &self.target,
            REPOSITORY,
            &self.config,
            self.now,
        );
        matches!(result.verdict, Verdict::Trusted(_))
    }

    /// Every primitive, none skipped when one fails.
    fn verify_primitives(&self) -> bool {
        let verified = self
            .primitives
            .iter()
            .filter(|p| black_box(p).verify())
            .count();
        verified == self.primitives.len()
    }
}

fn vectors() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/vectors");
    assert!(
        dir.join("cases.json").is_file(),
        "the shared test vectors are missing: expected {}/cases.json",
        dir.display()
    );
    dir
}

fn at(rfc3339: &str) -> SystemTime {
    let seconds = Moment::parse_rfc3339(rfc3339).unwrap().unix_seconds();
    UNIX_EPOCH + Duration::from_secs(u64::try_from(seconds).unwrap())
}

fn load_case(dir: &Path, cases: &Value, id: &str) -> Case {
    let case = cases["cases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == id)
        .unwrap_or_else(|| panic!("{id} is not in cases.json"));
    assert_eq!(case["kind"], "notation-envelope", "{id}");
    assert_eq!(case["expected"], "valid", "{id}");
    let target = &case["target"];
    let target = Descriptor::new(
        target["mediaType"].as_str().unwrap(),
        target["digest"]
            .as_str()
            .unwrap()
            .parse::<Digest>()
            .unwrap(),
        target["size"].as_u64().unwrap(),
    );
    let policy = std::fs::read(dir.join(case["trust_policy"].as_str().unwrap())).unwrap();
    let document = TrustPolicyDocument::parse(&policy).unwrap();
    // The vectors' expected results assume the TSA chain's revocation is not checked
    // (its GlobalSign responders cannot be reached here).
    let config = NotationConfig::new(
        document,
        &dir.join(case["trust_store_root"].as_str().unwrap()),
    )
    .unwrap()
    .with_timestamp_revocation(false);
    let media_type = case["envelope_media_type"].as_str().unwrap().to_owned();
    let envelope = std::fs::read(dir.join(case["envelope"].as_str().unwrap())).unwrap();
    let parts = match media_type.as_str() {
        "application/jose+json" => jws_parts(&envelope),
        "application/cose" => cose_parts(&envelope),
        other => panic!("{id}: media type {other}"),
    };
    let mut primitives = vec![envelope_primitive(&parts)];
    primitives.extend(chain_links("x5c", &parts.chain, None));
    let mut description = format!(
        "{}, {} cert{}",
        if media_type == "application/cose" {
            "COSE"
        } else {
            "JWS"
        },
        parts.chain.len(),
        if parts.chain.len() == 1 { "" } else { "s" }
    );
    if let Some(token) = &parts.timestamp {
        let anchors = tsa_anchors(dir, &policy);
        primitives.extend(timestamp_primitives(token, &anchors));
        description.push_str(", RFC 3161");
    }
    let case = Case {
        id: id.to_owned(),
        description,
        media_type,
        envelope,
        target,
        config,
        now: at(case["verify_at"].as_str().unwrap()),
        primitives,
    };
    assert!(case.verify_cold(), "{id}: crigate does not verify the case");
    for p in &case.primitives {
        assert!(p.verify(), "{id}: primitive {} does not verify", p.label);
        assert!(
            p.verify_rsa_crate(),
            "{id}: primitive {} does not verify with the rsa crate",
            p.label
        );
    }
    case
}

/// What the envelope signs and carries, format-neutral.
struct Parts {
    alg: &'static str,
    signing_input: Vec<u8>,
    signature: Vec<u8>,
    chain: Vec<Vec<u8>>,
    timestamp: Option<Vec<u8>>,
}

fn jws_parts(bytes: &[u8]) -> Parts {
    let jws: Value = serde_json::from_slice(bytes).unwrap();
    let protected = jws["protected"].as_str().unwrap();
    let header: Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(protected).unwrap()).unwrap();
    let alg = match header["alg"].as_str().unwrap() {
        "PS256" => "PS256",
        "PS384" => "PS384",
        "PS512" => "PS512",
        other => panic!("JWS alg {other}"),
    };
    let chain = jws["header"]["x5c"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| STANDARD.decode(c.as_str().unwrap()).unwrap())
        .collect();
    let timestamp = jws["header"]["io.cncf.notary.timestampSignature"]
        .as_str()
        .map(|t| STANDARD.decode(t).unwrap());
    Parts {
        alg,
        signing_input: format!("{protected}.{}", jws["payload"].as_str().unwrap()).into_bytes(),
        signature: URL_SAFE_NO_PAD
            .decode(jws["signature"].as_str().unwrap())
            .unwrap(),
        chain,
        timestamp,
    }
}

/// The CBOR the COSE envelopes use (RFC 8949, definite lengths only).
#[derive(Debug)]
enum Cbor {
    Uint(u64),
    Neg(u64),
    Bytes(Vec<u8>),
    Text(String),
    Array(Vec<Cbor>),
    Map(Vec<(Cbor, Cbor)>),
    Tag(u64, Box<Cbor>),
    Simple,
}

fn cbor(input: &mut &[u8]) -> Cbor {
    let (&first, rest) = input.split_first().unwrap();
    *input = rest;
    let major = first >> 5;
    let info = first & 0x1f;
    let mut take = |n: usize| {
        let (head, rest) = input.split_at(n);
        *input = rest;
        head
    };
    let arg = match info {
        0..=23 => u64::from(info),
        24 => u64::from(take(1)[0]),
        25 => u64::from(u16::from_be_bytes(take(2).try_into().unwrap())),
        26 => u64::from(u32::from_be_bytes(take(4).try_into().unwrap())),
        27 => u64::from_be_bytes(take(8).try_into().unwrap()),
        _ => panic!("indefinite or reserved CBOR length"),
    };
    let len = usize::try_from(arg).unwrap();
    match major {
        0 => Cbor::Uint(arg),
        1 => Cbor::Neg(arg),
        2 => Cbor::Bytes(take(len).to_vec()),
        3 => Cbor::Text(String::from_utf8(take(len).to_vec()).unwrap()),
        4 => Cbor::Array((0..len).map(|_| cbor(input)).collect()),
        5 => Cbor::Map((0..len).map(|_| (cbor(input), cbor(input))).collect()),
        6 => Cbor::Tag(arg, Box::new(cbor(input))),
        _ => Cbor::Simple,
    }
}

fn cbor_head(out: &mut Vec<u8>, major: u8, len: usize) {
    let major = major << 5;
    match len {
        0..=23 => out.push(major | u8::try_from(len).unwrap()),
        24..=0xff => out.extend([major | 24, u8::try_from(len).unwrap()]),
        0x100..=0xffff => {
            out.push(major | 25);
            out.extend(u16::try_from(len).unwrap().to_be_bytes());
        }
        _ => {
            out.push(major | 26);
            out.extend(u32::try_from(len).unwrap().to_be_bytes());
        }
    }
}

fn cose_parts(bytes: &[u8]) -> Parts {
    let mut input = bytes;
    let Cbor::Tag(18, sign1) = cbor(&mut input) else {
        panic!("not a COSE_Sign1")
    };
    let Cbor::Array(items) = *sign1 else {
        panic!("COSE_Sign1 is not an array")
    };
    let [Cbor::Bytes(protected), Cbor::Map(unprotected), Cbor::Bytes(payload), Cbor::Bytes(signature)] =
        items.as_slice()
    else {
        panic!("COSE_Sign1 layout")
    };
    let Cbor::Map(headers) = cbor(&mut protected.as_slice()) else {
        panic!("protected header is not a map")
    };
    let alg = headers
        .iter()
        .find_map(|(k, v)| match (k, v) {
            (Cbor::Uint(1), Cbor::Neg(36)) => Some("PS256"),
            (Cbor::Uint(1), Cbor::Neg(37)) => Some("PS384"),
            (Cbor::Uint(1), Cbor::Neg(38)) => Some("PS512"),
            _ => None,
        })
        .expect("COSE alg is not PS256/PS384/PS512");
    let mut chain = Vec::new();
    let mut timestamp = None;
    for (key, value) in unprotected {
        match (key, value) {
            (Cbor::Uint(33), Cbor::Array(certs)) => {
                for cert in certs {
                    let Cbor::Bytes(der) = cert else {
                        panic!("x5chain")
                    };
                    chain.push(der.clone());
                }
            }
            (Cbor::Uint(33), Cbor::Bytes(der)) => chain.push(der.clone()),
            (Cbor::Text(name), Cbor::Bytes(token))
                if name == "io.cncf.notary.timestampSignature" =>
            {
                timestamp = Some(token.clone());
            }
            _ => {}
        }
    }
    // Sig_structure = ["Signature1", body_protected, external_aad = h'', payload]
    // (RFC 9052 4.4).
    let mut signing_input = vec![0x84];
    cbor_head(&mut signing_input, 3, "Signature1".len());
    signing_input.extend(b"Signature1");
    cbor_head(&mut signing_input, 2, protected.len());
    signing_input.extend(protected);
    cbor_head(&mut signing_input, 2, 0);
    cbor_head(&mut signing_input, 2, payload.len());
    signing_input.extend(payload);
    Parts {
        alg,
        signing_input,
        signature: signature.clone(),
        chain,
        timestamp,
    }
}

/// The key bytes aws-lc-rs takes: the subjectPublicKey BIT STRING contents (PKCS#1
/// `RSAPublicKey` or SEC1 point).
fn public_key(cert: &Certificate) -> Vec<u8> {
    cert.tbs_certificate()
        .subject_public_key_info()
        .subject_public_key
        .as_bytes()
        .unwrap()
        .to_vec()
}

fn key_bits(cert: &Certificate) -> usize {
    let key = public_key(cert);
    match cert
        .tbs_certificate()
        .subject_public_key_info()
        .algorithm
        .oid
        .to_string()
        .as_str()
    {
        // RSAPublicKey ::= SEQUENCE { modulus INTEGER, ... }: the modulus length.
        "1.2.840.113549.1.1.1" => {
            let key: rsa::pkcs1::RsaPublicKey<der::asn1::UintRef<'_>> =
                rsa::pkcs1::RsaPublicKey::from_der(&key).unwrap();
            key.modulus.as_bytes().len() * 8
        }
        _ => (key.len() - 1) / 2 * 8,
    }
}

/// The aws-lc-rs algorithm for an X.509 or CMS signature algorithm (PKCS#1 v1.5 or
/// ECDSA; `digest` for a bare rsaEncryption in CMS).
/// The vectors' certificates and TSA tokens all sign with RSA; ECDSA would need a
/// second comparison path and is not covered.
fn x509_algorithm(oid: &str, digest: Option<&str>) -> (Scheme, &'static dyn VerificationAlgorithm) {
    match (oid, digest) {
        ("1.2.840.113549.1.1.11", _) | ("1.2.840.113549.1.1.1", Some("2.16.840.1.101.3.4.2.1")) => {
            (
                Scheme::Pkcs1(Hash::Sha256),
                &signature::RSA_PKCS1_2048_8192_SHA256,
            )
        }
        ("1.2.840.113549.1.1.12", _) | ("1.2.840.113549.1.1.1", Some("2.16.840.1.101.3.4.2.2")) => {
            (
                Scheme::Pkcs1(Hash::Sha384),
                &signature::RSA_PKCS1_2048_8192_SHA384,
            )
        }
        ("1.2.840.113549.1.1.13", _) | ("1.2.840.113549.1.1.1", Some("2.16.840.1.101.3.4.2.3")) => {
            (
                Scheme::Pkcs1(Hash::Sha512),
                &signature::RSA_PKCS1_2048_8192_SHA512,
            )
        }
        other => panic!("signature algorithm {other:?} not covered by this bench"),
    }
}

fn x509_name(oid: &str) -> &'static str {
    match oid {
        "1.2.840.113549.1.1.11" => "sha256WithRSA",
        "1.2.840.113549.1.1.12" => "sha384WithRSA",
        "1.2.840.113549.1.1.13" => "sha512WithRSA",
        "1.2.840.10045.4.3.2" => "ecdsaWithSHA256",
        "1.2.840.10045.4.3.3" => "ecdsaWithSHA384",
        _ => "?",
    }
}

fn envelope_primitive(parts: &Parts) -> Primitive {
    let leaf = Certificate::from_der(&parts.chain[0]).unwrap();
    let (scheme, algorithm): (Scheme, &'static dyn VerificationAlgorithm) = match parts.alg {
        "PS256" => (
            Scheme::Pss(Hash::Sha256),
            &signature::RSA_PSS_2048_8192_SHA256,
        ),
        "PS384" => (
            Scheme::Pss(Hash::Sha384),
            &signature::RSA_PSS_2048_8192_SHA384,
        ),
        "PS512" => (
            Scheme::Pss(Hash::Sha512),
            &signature::RSA_PSS_2048_8192_SHA512,
        ),
        other => panic!("envelope alg {other}"),
    };
    Primitive {
        label: format!("envelope {} (RSA-{})", parts.alg, key_bits(&leaf)),
        scheme,
        algorithm,
        key: public_key(&leaf),
        message: parts.signing_input.clone(),
        signature: parts.signature.clone(),
    }
}

/// One signature check per link of an ordered chain: each certificate by the next, and
/// the last by itself unless it is `anchor` (a trusted certificate from the store,
/// whose own signature verification need not check).
fn chain_links(what: &str, chain: &[Vec<u8>], anchor: Option<&[u8]>) -> Vec<Primitive> {
    let certs: Vec<Certificate> = chain
        .iter()
        .map(|der| Certificate::from_der(der).unwrap())
        .collect();
    let mut links = Vec::new();
    for (index, cert) in certs.iter().enumerate() {
        let issuer = match certs.get(index + 1) {
            Some(issuer) => issuer,
            None if anchor == Some(chain[index].as_slice()) => break,
            None => cert,
        };
        let oid = cert.signature_algorithm().oid.to_string();
        let (scheme, algorithm) = x509_algorithm(&oid, None);
        let name = if std::ptr::eq(issuer, cert) {
            "self".to_owned()
        } else {
            format!("cert {}", index + 1)
        };
        links.push(Primitive {
            label: format!(
                "{what} cert {index} <- {name}: {} (RSA-{})",
                x509_name(&oid),
                key_bits(issuer)
            ),
            scheme,
            algorithm,
            key: public_key(issuer),
            message: cert.tbs_certificate().to_der().unwrap(),
            signature: cert.signature().as_bytes().unwrap().to_vec(),
        });
    }
    links
}

/// The certificates of the policy's `tsa` stores.
fn tsa_anchors(dir: &Path, policy: &[u8]) -> Vec<Vec<u8>> {
    let policy: Value = serde_json::from_slice(policy).unwrap();
    let mut anchors = Vec::new();
    for statement in policy["trustPolicies"].as_array().unwrap() {
        for store in statement["trustStores"].as_array().unwrap() {
            let Some(name) = store.as_str().unwrap().strip_prefix("tsa:") else {
                continue;
            };
            let store_dir = dir.join("notation/truststore/x509/tsa").join(name);
            for entry in std::fs::read_dir(store_dir).unwrap() {
                let bytes = std::fs::read(entry.unwrap().path()).unwrap();
                match pem::parse_many(&bytes) {
                    Ok(blocks) if !blocks.is_empty() => {
                        anchors.extend(blocks.into_iter().map(|b| b.into_contents()));
                    }
                    _ => anchors.push(bytes),
                }
            }
        }
    }
    anchors
}

/// The TSA's signature over the signed attributes and the TSA chain's links, from the
/// TSA certificate through the token's certificates to a trusted one.
fn timestamp_primitives(token: &[u8], anchors: &[Vec<u8>]) -> Vec<Primitive> {
    let content_info = ContentInfo::from_der(token).unwrap();
    let signed_data: SignedData = content_info.content.decode_as().unwrap();
    let certs: Vec<Certificate> = signed_data
        .certificates
        .as_ref()
        .unwrap()
        .0
        .iter()
        .filter_map(|choice| match choice {
            CertificateChoices::Certificate(cert) => Some(cert.clone()),
            CertificateChoices::Other(_) => None,
        })
        .collect();
    let signer = signed_data.signer_infos.0.iter().next().unwrap();
    let cms::signed_data::SignerIdentifier::IssuerAndSerialNumber(sid) = &signer.sid else {
        panic!("TSA signer identified by key identifier")
    };
    let tsa = certs
        .iter()
        .find(|c| {
            c.tbs_certificate().issuer() == &sid.issuer
                && c.tbs_certificate().serial_number() == &sid.serial_number
        })
        .unwrap();
    // RFC 5652 5.4: the signature covers the DER of the signed attributes as a SET OF.
    let signed_attrs = signer.signed_attrs.as_ref().unwrap().to_der().unwrap();
    let oid = signer.signature_algorithm.oid.to_string();
    let digest = signer.digest_alg.oid.to_string();
    let (scheme, algorithm) = x509_algorithm(&oid, Some(&digest));
    let mut primitives = vec![Primitive {
        label: format!(
            "TSA signature over signed attributes (RSA-{})",
            key_bits(tsa)
        ),
        scheme,
        algorithm,
        key: public_key(tsa),
        message: signed_attrs,
        signature: signer.signature.as_bytes().to_vec(),
    }];
    // Follow issuer names from the TSA certificate to a certificate of the tsa store.
    let all: Vec<Vec<u8>> = anchors
        .iter()
        .cloned()
        .chain(certs.iter().map(|c| c.to_der().unwrap()))
        .collect();
    let mut chain = vec![tsa.to_der().unwrap()];
    loop {
        let current = Certificate::from_der(chain.last().unwrap()).unwrap();
        let current_der = chain.last().unwrap().clone();
        if anchors.contains(&current_der) {
            break;
        }
        let issuer = all
            .iter()
            .find(|der| {
                **der != current_der
                    && Certificate::from_der(der)
                        .unwrap()
                        .tbs_certificate()
                        .subject()
                        == current.tbs_certificate().issuer()
            })
            .unwrap_or_else(|| panic!("no issuer for the TSA chain"));
        chain.push(issuer.clone());
    }
    let anchor = chain.last().unwrap().clone();
    primitives.extend(chain_links("TSA", &chain, Some(&anchor)));
    primitives
}

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// How many calls of `f` take about `run` (at least one).
fn calibrate(f: &mut dyn FnMut() -> bool, run: Duration) -> u64 {
    let mut iterations = 1u64;
    loop {
        let start = Instant::now();
        for _ in 0..iterations {
            assert!(f());
        }
        let elapsed = start.elapsed();
        if elapsed >= run / 4 {
            let per_call = elapsed.as_secs_f64() / iterations as f64;
            return ((run.as_secs_f64() / per_call) as u64).max(1);
        }
        iterations *= 2;
    }
}

/// Time per call over one run of `iterations` calls.
fn run_once(f: &mut dyn FnMut() -> bool, iterations: u64) -> Duration {
    let start = Instant::now();
    for _ in 0..iterations {
        assert!(black_box(f()));
    }
    start.elapsed() / u32::try_from(iterations).unwrap_or(u32::MAX)
}

fn median(samples: &mut [Duration]) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn micros(d: Duration) -> String {
    format!("{:.1}", d.as_secs_f64() * 1e6)
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

struct Row {
    cold: Duration,
    cold_spread: (Duration, Duration),
    sum: Duration,
    sum_spread: (Duration, Duration),
    each: Vec<Duration>,
    each_rsa_crate: Vec<Duration>,
}

fn measure(case: &Case, runs: u64, run: Duration) -> Row {
    let mut cold = || case.verify_cold();
    let mut sum = || case.verify_primitives();
    // Warm-up: caches, branch predictors, the allocator, CPU frequency.
    let warm_until = Instant::now() + run;
    while Instant::now() < warm_until {
        assert!(cold());
        assert!(sum());
    }
    let cold_iterations = calibrate(&mut cold, run);
    let sum_iterations = calibrate(&mut sum, run);
    let mut each_iterations: Vec<u64> = case
        .primitives
        .iter()
        .map(|p| calibrate(&mut || p.verify(), run / 4))
        .collect();
    let mut rsa_iterations: Vec<u64> = case
        .primitives
        .iter()
        .map(|p| calibrate(&mut || p.verify_rsa_crate(), run / 4))
        .collect();
    let mut rsa_samples: Vec<Vec<Duration>> = vec![Vec::new(); case.primitives.len()];
    let mut cold_samples = Vec::new();
    let mut sum_samples = Vec::new();
    let mut each_samples: Vec<Vec<Duration>> = vec![Vec::new(); case.primitives.len()];
    // Interleaved, so that drift in machine load hits both sides alike.
    for _ in 0..runs {
        cold_samples.push(run_once(&mut cold, cold_iterations));
        sum_samples.push(run_once(&mut sum, sum_iterations));
        for ((p, samples), iterations) in case
            .primitives
            .iter()
            .zip(&mut each_samples)
            .zip(&mut each_iterations)
        {
            samples.push(run_once(&mut || p.verify(), *iterations));
        }
        for ((p, samples), iterations) in case
            .primitives
            .iter()
            .zip(&mut rsa_samples)
            .zip(&mut rsa_iterations)
        {
            samples.push(run_once(&mut || p.verify_rsa_crate(), *iterations));
        }
    }
    let spread = |samples: &mut Vec<Duration>| {
        samples.sort();
        (samples[0], samples[samples.len() - 1])
    };
    let cold = median(&mut cold_samples);
    let sum = median(&mut sum_samples);
    Row {
        cold,
        cold_spread: spread(&mut cold_samples),
        sum,
        sum_spread: spread(&mut sum_samples),
        each: each_samples.iter_mut().map(|s| median(s)).collect(),
        each_rsa_crate: rsa_samples.iter_mut().map(|s| median(s)).collect(),
    }
}

fn main() {
    // `cargo bench` passes --bench; `cargo test --benches` passes nothing and only builds.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let runs = env_number("CRIGATE_BENCH_RUNS", 9).max(1);
    let run = Duration::from_millis(env_number("CRIGATE_BENCH_RUN_MS", 200).max(1));
    let dir = vectors();
    let cases: Value =
        serde_json::from_slice(&std::fs::read(dir.join("cases.json")).unwrap()).unwrap();
    let only = std::env::var("CRIGATE_BENCH_CASES").unwrap_or_default();
    let cases: Vec<Case> = CASES
        .iter()
        .filter(|id| only.is_empty() || only.split(',').any(|o| o == **id))
        .map(|id| load_case(&dir, &cases, id))
        .collect();

    let load_before = load_average();
    let rows: Vec<Row> = cases.iter().map(|c| measure(c, runs, run)).collect();
    let load_after = load_average();

    println!();
    println!(
        "Notation cold verification vs. its primitive checks (aws-lc-rs); median of {runs} runs \
         of ~{} ms, per call, µs [min-max]; load average {load_before} before, {load_after} after",
        run.as_millis()
    );
    println!();
    println!(
        "| case | envelope | checks | cold verify µs | primitives sum µs | cold / sum | target |"
    );
    println!("|---|---|---:|---:|---:|---:|---|");
    for (case, row) in cases.iter().zip(&rows) {
        let ratio = row.cold.as_secs_f64() / row.sum.as_secs_f64();
        println!(
            "| {} | {} | {} | {} [{}-{}] | {} [{}-{}] | {:.2}x | {} |",
            case.id,
            case.description,
            case.primitives.len(),
            micros(row.cold),
            micros(row.cold_spread.0),
            micros(row.cold_spread.1),
            micros(row.sum),
            micros(row.sum_spread.0),
            micros(row.sum_spread.1),
            ratio,
            if ratio <= TARGET_RATIO {
                "met"
            } else {
                "OVER 1.5x"
            }
        );
    }
    println!();
    println!(
        "Each primitive alone, median µs: with aws-lc-rs (the floor above, and what \
         verify::notation::crypto uses) and with the pure-Rust `rsa` crate (its fallback for \
         RSASSA-PSS salts other than the hash length; key parse + hash + verify)"
    );
    println!();
    println!("| case | primitive check | aws-lc-rs µs | rsa crate µs | rsa / aws-lc |");
    println!("|---|---|---:|---:|---:|");
    for (case, row) in cases.iter().zip(&rows) {
        let mut totals = (Duration::ZERO, Duration::ZERO);
        for ((p, d), r) in case
            .primitives
            .iter()
            .zip(&row.each)
            .zip(&row.each_rsa_crate)
        {
            totals.0 += *d;
            totals.1 += *r;
            println!(
                "| {} | {} | {} | {} | {:.1}x |",
                case.id,
                p.label,
                micros(*d),
                micros(*r),
                r.as_secs_f64() / d.as_secs_f64()
            );
        }
        println!(
            "| {} | **sum** | {} | {} | {:.1}x |",
            case.id,
            micros(totals.0),
            micros(totals.1),
            totals.1.as_secs_f64() / totals.0.as_secs_f64()
        );
    }
}
