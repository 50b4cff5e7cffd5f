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
    if key.is_ascii() {
        // An ASCII key folds to its ASCII upper case: equal to a field's fold but for
        // ASCII case, with nothing to allocate.
        return fields
            .iter()
            .copied()
            .find(|field| *field != key && fold(field).eq_ignore_ascii_case(key));
    }
    let folded = fold(key);
    fields
        .iter()
        .copied()
        .find(|field| *field != key && fold(field) == folded)
}

/// The first key in the JSON text `bytes`, at any depth, that names one of `fields` but
/// for case, and that field. The values of `skip` keys are not looked into (free-form
/// maps, such as annotations, whose keys Go takes as they are). Read as it is parsed,
/// without building the document's tree: a document of many small values costs time and memory in
/// proportion to its bytes. Keys are seen in document order, repeated keys included.
///
/// # Errors
///
/// `bytes` is not one JSON value, or nests deeper than the parser allows.
pub fn find_case_variant_in<'a>(
    bytes: &[u8],
    fields: &[&'a str],
    skip: &[&str],
) -> Result<Option<(String, &'a str)>, serde_json::Error> {
    let folded: Vec<String> = fields.iter().map(|field| fold(field)).collect();
    let walk = Walk {
        fields,
        folded: &folded,
        skip,
    };
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let found = serde::de::DeserializeSeed::deserialize(walk, &mut deserializer)?;
    deserializer.end()?;
    Ok(found)
}

/// One pass over a JSON value for [`find_case_variant_in`]: it yields the first key
/// that is a case variant of a field, and reads on to the end of the value.
#[derive(Clone, Copy)]
struct Walk<'w, 'a> {
    fields: &'w [&'a str],
    /// `fields`, each folded.
    folded: &'w [String],
    skip: &'w [&'w str],
}

impl<'a> Walk<'_, 'a> {
    fn variant(&self, key: &str) -> Option<&'a str> {
        let folded_key = (!key.is_ascii()).then(|| fold(key));
        self.fields
            .iter()
            .zip(self.folded)
            .find(|(field, folded)| {
                **field != key
                    && match &folded_key {
                        // An ASCII key folds to its ASCII upper case.
                        None => folded.eq_ignore_ascii_case(key),
                        Some(folded_key) => *folded == folded_key,
                    }
            })
            .map(|(field, _)| *field)
    }
}

impl<'de, 'a> serde::de::DeserializeSeed<'de> for Walk<'_, 'a> {
    type Value = Option<(String, &'a str)>;

    fn deserialize<D: serde::Deserializer<'de>>(
        self,
        deserializer: D,
    ) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de, 'a> serde::de::Visitor<'de> for Walk<'_, 'a> {
    type Value = Option<(String, &'a str)>;

    fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("a JSON value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_str<E>(self, _: &str) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut found = None;
        while let Some(inner) = seq.next_element_seed(self)? {
            found = found.or(inner);
        }
        Ok(found)
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut found = None;
        while let Some(key) = map.next_key::<Key<'de>>()? {
            let key = key.0;
            if found.is_none() {
                found = self
                    .variant(&key)
                    .map(|field| (key.clone().into_owned(), field));
            }
            if self.skip.contains(&&*key) {
                map.next_value::<serde::de::IgnoredAny>()?;
            } else {
                let inner = map.next_value_seed(self)?;
                found = found.or(inner);
            }
        }
        Ok(found)
    }
}

/// An object key, borrowed from the text where it has no escapes.
struct Key<'de>(std::borrow::Cow<'de, str>);

impl<'de> serde::Deserialize<'de> for Key<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl<'de> serde::de::Visitor<'de> for KeyVisitor {
            type Value = Key<'de>;

            fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                formatter.write_str("an object key")
            }

            fn visit_borrowed_str<E>(self, key: &'de str) -> Result<Self::Value, E> {
                Ok(Key(std::borrow::Cow::Borrowed(key)))
            }

            fn visit_str<E>(self, key: &str) -> Result<Self::Value, E> {
                Ok(Key(std::borrow::Cow::Owned(key.to_owned())))
            }
        }
        deserializer.deserialize_str(KeyVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// [`find_case_variant_in`] over a parsed tree, which keeps one value of a repeated key:
    /// what the streaming walk must agree with.
    fn find_case_variant<'a>(
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
            let document = format!("{{{}:1}}", serde_json::to_string(key).unwrap());
            let found = find_case_variant_in(document.as_bytes(), &[field], &[]).unwrap();
            assert_eq!(found, Some((key.to_owned(), field)), "{key}");
        }
        for key in ["digest", "digests", "dig", "size "] {
            assert_eq!(case_variant(key, &["digest"]), None, "{key}");
        }
    }

    #[test]
    fn variants_are_found_at_any_depth_but_not_in_skipped_maps() {
        let found = |json: &str| {
            let value: serde_json::Value = serde_json::from_str(json).unwrap();
            let fields = &["digest", "platform"];
            let streamed = find_case_variant_in(json.as_bytes(), fields, &["annotations"]);
            let tree = find_case_variant(&value, fields, &["annotations"]);
            assert_eq!(streamed.unwrap(), tree, "{json}");
            tree
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

    /// A skipped value is passed over without recursion, however deep it nests (the
    /// typed parse then refuses it as the wrong type), and a value looked into stops at
    /// the parser's depth limit: neither can overflow the stack.
    #[test]
    fn deep_values_end_in_an_answer_not_a_stack_overflow() {
        let depth = 1_000_000;
        let nested = format!("{}{}", "[".repeat(depth), "]".repeat(depth));
        let skipped = format!(r#"{{"annotations":{nested}}}"#);
        let fields = &["layers"];
        assert_eq!(
            find_case_variant_in(skipped.as_bytes(), fields, &["annotations"]).unwrap(),
            None
        );
        let looked_into = format!(r#"{{"x":{nested}}}"#);
        let refused = find_case_variant_in(looked_into.as_bytes(), fields, &["annotations"]);
        assert!(
            refused.is_err_and(|e| e.to_string().contains("recursion limit")),
            "a value nested past the limit was read"
        );
    }
}
