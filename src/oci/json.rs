//! Object keys as Go's `encoding/json` matches them to struct fields, which the other
//! readers of these documents (containerd, cosign, notation) are written with.
//!
//! Go takes a key that equals a field's name but for case as that field (its `foldName`:
//! each letter upper-cased, so `ſ` reads as `s`), the last one in an object winning;
//! crigate's parsers read only the exact name. A document holding such a key can mean
//! one thing to crigate and another to them, so the parsers that decide what is trusted
//! refuse it.

/// `name` as Go compares field names: Go 1.21's `appendFoldedName` takes each character
/// other than ASCII as `unicode.ToUpper(unicode.ToLower(c))`, by the simple case
/// mappings. Where those lead into ASCII Rust's full mappings do not: the Kelvin sign
/// and `İ`, whose simple lower cases are `k` and `i`, are mapped here.
pub fn fold(name: &str) -> String {
    name.chars()
        .map(|c| match c {
            '\u{212A}' => 'k',
            '\u{0130}' => 'i',
            c => c,
        })
        .flat_map(char::to_uppercase)
        .collect()
}

/// The field of `fields` that `key` names but for case, if any.
pub fn case_variant<'a>(key: &str, fields: &[&'a str]) -> Option<&'a str> {
    let folded = fold(key);
    fields
        .iter()
        .copied()
        .find(|field| *field != key && fold(field) == folded)
}

/// The first key in `value`, at any depth, that names one of `fields` but for case, and
/// that field. The values of `skip` keys are not looked into (free-form maps, such as
/// annotations, whose keys Go takes as they are).
pub fn find_case_variant<'a>(
    value: &serde_json::Value,
    fields: &[&'a str],
    skip: &[&str],
) -> Option<(String, &'a str)> {
    match value {
        serde_json::Value::Object(object) => object.iter().find_map(|(key, value)| {
            if let Some(field) = case_variant(key, fields) {
                return Some((key.clone(), field));
            }
            if skip.contains(&key.as_str()) {
                return None;
            }
            find_case_variant(value, fields, skip)
        }),
        serde_json::Value::Array(items) => items
            .iter()
            .find_map(|item| find_case_variant(item, fields, skip)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_fold_as_go_folds_them() {
        for (key, field) in [
            ("Digest", "digest"),
            ("DIGEST", "digest"),
            ("ſize", "size"),
            ("mediatype", "mediaType"),
            ("\u{212A}ey", "key"),
            // `İ` lower-cases to `i`, and dotless `ı` upper-cases to `I`.
            ("d\u{0130}gest", "digest"),
            ("d\u{0131}gest", "digest"),
        ] {
            assert_eq!(case_variant(key, &[field]), Some(field), "{key}");
        }
        for key in ["digest", "digests", "dig", "size "] {
            assert_eq!(case_variant(key, &["digest"]), None, "{key}");
        }
    }

    #[test]
    fn variants_are_found_at_any_depth_but_not_in_skipped_maps() {
        let found = |json: &str| {
            let value: serde_json::Value = serde_json::from_str(json).unwrap();
            find_case_variant(&value, &["digest", "platform"], &["annotations"])
        };
        assert_eq!(
            found(r#"{"manifests":[{"digest":"a"},{"digest":"b","Digest":"c"}]}"#),
            Some(("Digest".to_owned(), "digest"))
        );
        assert_eq!(
            found(r#"{"a":{"b":[[{"PLATFORM":{}}]]}}"#),
            Some(("PLATFORM".to_owned(), "platform"))
        );
        assert_eq!(found(r#"{"annotations":{"Digest":"free-form"}}"#), None);
        assert_eq!(found(r#"{"digest":"a","platform":{"os":"linux"}}"#), None);
    }
}
