//! Transparency-log proofs carried by Sigstore bundles: the Merkle audit path of an entry
//! (RFC 6962 §2.1.1, verified with the algorithm of RFC 9162 §2.1.3.2) and the signed
//! checkpoint that commits to the tree's root (Rekor `pkg/util/checkpoint.go`, the
//! signed-note format of golang.org/x/mod `sumdb/note`).
#![deny(clippy::indexing_slicing)]

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use sha2::{Digest as _, Sha256};

use super::key::{KeyKind, PublicKey, SignatureDigest};
use super::policy::LogKey;
use crate::verify::Rejection;

/// The largest checkpoint note we read (Rekor's are ~300 bytes).
pub const MAX_CHECKPOINT_BYTES: usize = 8 * 1024;
/// Most hashes in an audit path: a tree of 2^64 leaves needs 64.
pub const MAX_PROOF_HASHES: usize = 64;
/// Most signature lines read from one note.
pub const MAX_NOTE_SIGNATURES: usize = 16;

/// A parsed checkpoint: origin, tree size and root hash, plus the signatures over its
/// text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Checkpoint {
    pub origin: String,
    pub tree_size: u64,
    pub root_hash: [u8; 32],
    /// The signed text: every line before the blank line, each with its newline.
    text: Vec<u8>,
    signatures: Vec<NoteSignature>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct NoteSignature {
    /// The key name the signature line gives.
    name: String,
    key_hint: [u8; 4],
    signature: Vec<u8>,
}

/// RFC 6962 §2.1: the hash of a leaf, `SHA-256(0x00 || entry)`.
pub fn leaf_hash(entry: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update([0u8]);
    h.update(entry);
    h.finalize().into()
}

/// RFC 6962 §2.1: the hash of an interior node, `SHA-256(0x01 || left || right)`.
fn node_hash(left: &[u8; 32], right: &[u8; 32]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update([1u8]);
    h.update(left);
    h.update(right);
    h.finalize().into()
}

/// Verifies that `leaf_hash` is entry `leaf_index` of the tree of `tree_size` leaves
/// whose root is `root` (RFC 9162 §2.1.3.2, the verification of an RFC 6962 §2.1.1 audit
/// path).
///
/// # Errors
///
/// `Tampered` when the path does not lead to `root`; `Malformed` for an index outside
/// the tree, a path of the wrong length, or over [`MAX_PROOF_HASHES`].
pub fn verify_inclusion(
    leaf_index: u64,
    tree_size: u64,
    leaf_hash: &[u8; 32],
    proof: &[[u8; 32]],
    root: &[u8; 32],
) -> Result<(), Rejection> {
    // RFC 9162 §2.1.3.2 step 1: "If leaf_index is greater than or equal to tree_size,
    // then stop and fail the proof verification."
    if leaf_index >= tree_size {
        return Err(Rejection::Malformed(format!(
            "inclusion proof index {leaf_index} is outside a tree of {tree_size}"
        )));
    }
    if proof.len() > MAX_PROOF_HASHES {
        return Err(Rejection::Malformed("inclusion proof too long".to_owned()));
    }
    let mut f_n = leaf_index;
    let mut s_n = tree_size - 1;
    let mut r = *leaf_hash;
    for p in proof {
        // Step 4a: "If sn is 0, then stop the iteration and fail the proof verification."
        if s_n == 0 {
            return Err(Rejection::Malformed(
                "inclusion proof too long for the tree".to_owned(),
            ));
        }
        if f_n & 1 == 1 || f_n == s_n {
            r = node_hash(p, &r);
            if f_n & 1 == 0 {
                while f_n & 1 == 0 && f_n != 0 {
                    f_n >>= 1;
                    s_n >>= 1;
                }
            }
        } else {
            r = node_hash(&r, p);
        }
        f_n >>= 1;
        s_n >>= 1;
    }
    // Step 5: "compare sn to 0. Compare r against the root_hash."
    if s_n != 0 {
        return Err(Rejection::Malformed(
            "inclusion proof too short for the tree".to_owned(),
        ));
    }
    if r == *root {
        Ok(())
    } else {
        Err(Rejection::Tampered(
            "inclusion proof does not lead to the tree root".to_owned(),
        ))
    }
}

// === impl Checkpoint ===

impl Checkpoint {
    /// Parses a signed note: `<origin>\n<size>\n<base64 root>\n[extra lines]\n\n` then
    /// signature lines `— <name> <base64(key hint[4] || signature)>\n`.
    ///
    /// # Errors
    ///
    /// `Malformed` for anything else, or over [`MAX_CHECKPOINT_BYTES`].
    pub fn parse(note: &[u8]) -> Result<Self, Rejection> {
        let bad = |what: &str| Rejection::Malformed(format!("checkpoint: {what}"));
        if note.len() > MAX_CHECKPOINT_BYTES {
            return Err(bad("over its limit"));
        }
        let note = std::str::from_utf8(note).map_err(|_| bad("not UTF-8"))?;
        let (text, signatures_block) = note
            .split_once("\n\n")
            .ok_or_else(|| bad("no signature block"))?;
        let text = format!("{text}\n");
        let mut lines = text.lines();
        let origin = lines
            .next()
            .filter(|l| !l.is_empty())
            .ok_or_else(|| bad("no origin"))?;
        let tree_size = lines
            .next()
            .and_then(|l| l.parse::<u64>().ok())
            .ok_or_else(|| bad("tree size"))?;
        let root_hash: [u8; 32] = lines
            .next()
            .and_then(|l| B64.decode(l).ok())
            .and_then(|v| <[u8; 32]>::try_from(v).ok())
            .ok_or_else(|| bad("root hash"))?;
        let mut signatures = Vec::new();
        for line in signatures_block.lines().filter(|l| !l.is_empty()) {
            if signatures.len() == MAX_NOTE_SIGNATURES {
                return Err(bad("too many signatures"));
            }
            let rest = line
                .strip_prefix("\u{2014} ")
                .ok_or_else(|| bad("signature line"))?;
            let (name, sig_b64) = rest.rsplit_once(' ').ok_or_else(|| bad("signature line"))?;
            let raw = B64.decode(sig_b64).map_err(|_| bad("signature base64"))?;
            let (hint, signature) = raw
                .split_first_chunk::<4>()
                .ok_or_else(|| bad("short signature"))?;
            signatures.push(NoteSignature {
                name: name.to_owned(),
                key_hint: *hint,
                signature: signature.to_vec(),
            });
        }
        if signatures.is_empty() {
            return Err(bad("unsigned"));
        }
        Ok(Self {
            origin: origin.to_owned(),
            tree_size,
            root_hash,
            text: text.into_bytes(),
            signatures,
        })
    }

    /// Whether any signature names a configured log key (by the key IDs [`Self::verify`]
    /// reads), verified or not: the checkpoint claims to be from a configured log.
    pub fn names_a_key(&self, log_keys: &[LogKey]) -> bool {
        self.signatures
            .iter()
            .any(|sig| log_keys.iter().any(|k| names(&k.key, sig)))
    }

    /// Verifies that a configured log key signed this checkpoint. A signature names its
    /// key by a 4-byte key ID: for Rekor v1's logs, the first 4 bytes of SHA-256 of the
    /// key's DER SPKI (Rekor `pkg/util/signed_note.go`; also the C2SP signed-note ID of
    /// an ECDSA key); for an Ed25519 log (Rekor v2), the C2SP signed-note ID, which also
    /// binds the key name the signature line gives (C2SP `signed-note.md`, "Ed25519
    /// signatures": `SHA-256(key name || 0x0A || 0x01 || public key)[:4]`).
    ///
    /// # Errors
    ///
    /// `UntrustedRoot` when no signature is by a configured key; `Tampered` when one by
    /// a configured key does not verify.
    pub fn verify(&self, log_keys: &[LogKey]) -> Result<(), Rejection> {
        let mut known = false;
        for sig in &self.signatures {
            for key in log_keys.iter().map(|k| &k.key) {
                if !names(key, sig) {
                    continue;
                }
                known = true;
                if key
                    .verify_message(SignatureDigest::Sha256, &self.text, &sig.signature)
                    .is_ok()
                {
                    return Ok(());
                }
            }
        }
        if known {
            Err(Rejection::Tampered(
                "checkpoint signature does not verify".to_owned(),
            ))
        } else {
            Err(Rejection::UntrustedRoot(
                "checkpoint is not signed by a configured log".to_owned(),
            ))
        }
    }
}

/// Whether `sig`'s key ID (and, for Ed25519, its key name) is that of `key`.
fn names(key: &PublicKey, sig: &NoteSignature) -> bool {
    if key.key_id().get(..4) == Some(sig.key_hint.as_slice()) {
        return true;
    }
    key.kind() == KeyKind::Ed25519 && note_key_id(&sig.name, key.raw()) == sig.key_hint
}

/// The C2SP signed-note key ID of an Ed25519 key named `name`.
pub(crate) fn note_key_id(name: &str, ed25519: &[u8]) -> [u8; 4] {
    let mut hash = Sha256::new();
    hash.update(name.as_bytes());
    hash.update([0x0a, 0x01]);
    hash.update(ed25519);
    let digest: [u8; 32] = hash.finalize().into();
    let [a, b, c, d, ..] = digest;
    [a, b, c, d]
}

/// RFC 6962 §2.1 reference computations for tests: the tree hash and audit path.
#[cfg(test)]
pub(crate) mod reference {
    use super::node_hash;
    use sha2::{Digest as _, Sha256};

    /// RFC 6962 §2.1 MTH, the slow reference.
    pub(crate) fn mth(leaves: &[[u8; 32]]) -> [u8; 32] {
        match leaves.len() {
            0 => Sha256::digest([]).into(),
            1 => leaves[0],
            n => {
                let k = n.next_power_of_two() / 2;
                node_hash(&mth(&leaves[..k]), &mth(&leaves[k..]))
            }
        }
    }

    /// RFC 6962 §2.1.1 PATH(m, D[n]).
    pub(crate) fn path(m: usize, leaves: &[[u8; 32]]) -> Vec<[u8; 32]> {
        let n = leaves.len();
        if n <= 1 {
            return vec![];
        }
        let k = n.next_power_of_two() / 2;
        if m < k {
            let mut p = path(m, &leaves[..k]);
            p.push(mth(&leaves[k..]));
            p
        } else {
            let mut p = path(m - k, &leaves[k..]);
            p.push(mth(&leaves[..k]));
            p
        }
    }
}

#[cfg(test)]
mod tests {
    use aws_lc_rs::encoding::AsDer;
    use aws_lc_rs::rand::SystemRandom;
    use aws_lc_rs::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_ASN1_SIGNING};

    use super::reference::{mth, path};
    use super::*;

    #[test]
    fn the_signed_note_key_id_of_an_ed25519_key_is_the_one_its_log_publishes() {
        // The verifier key of sum.golang.org, as Go publishes it (its default GOSUMDB,
        // golang.org/x/mod/sumdb/note format `<name>+<hex key ID>+<base64(0x01 || key)>`).
        let vkey = "sum.golang.org+033de0ae+Ac4zctda0e5eza+HJyk9SxEdh+s3Ux18htTTAD8OuAn8";
        let mut parts = vkey.splitn(3, '+');
        let (name, id, key) = (
            parts.next().unwrap(),
            parts.next().unwrap(),
            B64.decode(parts.next().unwrap()).unwrap(),
        );
        assert_eq!(key[0], 0x01, "an Ed25519 key");
        assert_eq!(hex::encode(note_key_id(name, &key[1..])), id);
    }

    #[test]
    fn every_leaf_of_every_small_tree_verifies() {
        for n in 1..=17usize {
            let leaves: Vec<[u8; 32]> = (0..n).map(|i| leaf_hash(&i.to_be_bytes())).collect();
            let root = mth(&leaves);
            for m in 0..n {
                let proof = path(m, &leaves);
                assert!(
                    verify_inclusion(m as u64, n as u64, &leaves[m], &proof, &root).is_ok(),
                    "n={n} m={m}"
                );
                // Another leaf or another root is tampered.
                let other = leaf_hash(b"other");
                assert!(verify_inclusion(m as u64, n as u64, &other, &proof, &root).is_err());
                if !proof.is_empty() {
                    let mut bad = proof.clone();
                    bad[0][0] ^= 1;
                    assert!(matches!(
                        verify_inclusion(m as u64, n as u64, &leaves[m], &bad, &root),
                        Err(Rejection::Tampered(_))
                    ));
                }
            }
        }
    }

    #[test]
    fn index_outside_tree_and_wrong_length_are_malformed() {
        let leaves: Vec<[u8; 32]> = (0..4u8).map(|i| leaf_hash(&[i])).collect();
        let root = mth(&leaves);
        let proof = path(1, &leaves);
        assert!(matches!(
            verify_inclusion(4, 4, &leaves[1], &proof, &root),
            Err(Rejection::Malformed(_))
        ));
        assert!(matches!(
            verify_inclusion(1, 4, &leaves[1], &proof[..1], &root),
            Err(Rejection::Malformed(_))
        ));
        let mut long = proof.clone();
        long.push(root);
        assert!(matches!(
            verify_inclusion(1, 4, &leaves[1], &long, &root),
            Err(Rejection::Malformed(_))
        ));
    }

    fn signed_note(pair: &EcdsaKeyPair, key: &PublicKey, text: &str) -> String {
        let sig = pair.sign(&SystemRandom::new(), text.as_bytes()).unwrap();
        let mut raw = key.key_id()[..4].to_vec();
        raw.extend_from_slice(sig.as_ref());
        format!("{text}\n\u{2014} log.example {}\n", B64.encode(raw))
    }

    #[test]
    fn checkpoint_signed_by_configured_key_verifies() {
        let rng = SystemRandom::new();
        let doc = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &rng).unwrap();
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, doc.as_ref()).unwrap();
        let key = PublicKey::from_spki_der(pair.public_key().as_der().unwrap().as_ref()).unwrap();
        let root = B64.encode([7u8; 32]);
        let text = format!("log.example - 123\n42\n{root}\n");
        let note = signed_note(&pair, &key, &text);
        let log: LogKey = key.clone().into();
        let cp = Checkpoint::parse(note.as_bytes()).unwrap();
        assert_eq!((cp.tree_size, cp.root_hash), (42, [7u8; 32]));
        assert!(cp.verify(std::slice::from_ref(&log)).is_ok());
        // Altered size after signing.
        let altered = note.replacen("\n42\n", "\n43\n", 1);
        let cp = Checkpoint::parse(altered.as_bytes()).unwrap();
        assert!(matches!(
            cp.verify(std::slice::from_ref(&log)),
            Err(Rejection::Tampered(_))
        ));
        // Unknown key.
        let other = PublicKey::from_pem(
            &std::fs::read(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../shared/vectors/cosign/trust/rekor.pub"
            ))
            .unwrap(),
        )
        .unwrap();
        let cp = Checkpoint::parse(note.as_bytes()).unwrap();
        assert!(matches!(
            cp.verify(&[other.into()]),
            Err(Rejection::UntrustedRoot(_))
        ));
    }

    #[test]
    fn malformed_checkpoints_are_refused() {
        for bad in [
            &b""[..],
            b"origin\n1\n",
            b"origin\nx\nAAAA\n\n\xe2\x80\x94 a AAAAAAAA\n",
            b"origin\n1\nAAAA\n\n\xe2\x80\x94 a AAAAAAAA\n",
            b"origin\n1\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n\n",
        ] {
            assert!(matches!(
                Checkpoint::parse(bad),
                Err(Rejection::Malformed(_))
            ));
        }
    }
}
