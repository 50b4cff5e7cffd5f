use super::*;
use crate::oci::Digest;

fn digest(seed: &[u8]) -> String {
    Digest::sha256(seed).to_string()
}

fn oci_manifest(media_type: Option<&str>) -> serde_json::Value {
    let mut doc = serde_json::json!({
        "schemaVersion": 2,
        "artifactType": "application/vnd.example+type",
        "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": digest(b"{}"), "size": 2},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": digest(b"l"), "size": 1}],
        "subject": {"mediaType": OCI_MANIFEST, "digest": digest(b"s"), "size": 10},
        "annotations": {"a": "b"},
    });
    if let Some(media_type) = media_type {
        doc["mediaType"] = media_type.into();
    }
    doc
}

fn oci_index(media_type: Option<&str>) -> serde_json::Value {
    let mut doc = serde_json::json!({
        "schemaVersion": 2,
        "manifests": [{
            "mediaType": OCI_MANIFEST, "digest": digest(b"m"), "size": 5,
            "platform": {"architecture": "arm64", "os": "linux", "variant": "v8"},
            "artifactType": "application/vnd.cncf.notary.signature",
        }],
    });
    if let Some(media_type) = media_type {
        doc["mediaType"] = media_type.into();
    }
    doc
}

fn bytes(doc: &serde_json::Value) -> Vec<u8> {
    serde_json::to_vec(doc).unwrap()
}

#[test]
fn oci_manifest_fields_are_read() {
    let parsed = Manifest::parse(
        Some(OCI_MANIFEST),
        &bytes(&oci_manifest(Some(OCI_MANIFEST))),
    )
    .unwrap();
    let Manifest::Image(manifest) = &parsed else {
        panic!("not an image manifest: {parsed:?}")
    };
    assert_eq!(manifest.kind, ManifestKind::OciManifest);
    assert_eq!(
        manifest.artifact_type.as_deref(),
        Some("application/vnd.example+type")
    );
    assert_eq!(manifest.config.size, 2);
    assert_eq!(manifest.layers.len(), 1);
    assert_eq!(parsed.subject().unwrap().size, 10);
    assert_eq!(manifest.annotations.get("a").map(String::as_str), Some("b"));
}

#[test]
fn a_manifest_is_listed_under_its_artifact_type_else_its_configs() {
    let image = |doc: &serde_json::Value| match Manifest::parse(Some(OCI_MANIFEST), &bytes(doc)) {
        Ok(Manifest::Image(manifest)) => manifest,
        other => panic!("not an image manifest: {other:?}"),
    };
    let mut doc = oci_manifest(Some(OCI_MANIFEST));
    assert_eq!(
        image(&doc).listed_artifact_type(),
        "application/vnd.example+type"
    );
    // One written before image-spec 1.1 gave manifests `artifactType` names its type in its
    // config, as Notation's signatures did.
    doc.as_object_mut().unwrap().remove("artifactType");
    doc["config"]["mediaType"] = "application/vnd.cncf.notary.signature".into();
    assert_eq!(
        image(&doc).listed_artifact_type(),
        "application/vnd.cncf.notary.signature"
    );
}

#[test]
fn index_fields_and_platforms_are_read() {
    let parsed = Manifest::parse(Some(OCI_INDEX), &bytes(&oci_index(Some(OCI_INDEX)))).unwrap();
    let Manifest::Index(index) = parsed else {
        panic!("not an index")
    };
    let platform = index.manifests[0].platform.as_ref().unwrap();
    assert_eq!(
        (platform.architecture.as_str(), platform.variant.as_deref()),
        ("arm64", Some("v8"))
    );
    assert_eq!(
        index.manifests[0].artifact_type.as_deref(),
        Some("application/vnd.cncf.notary.signature")
    );
}

#[test]
fn docker_types_are_recognised() {
    let manifest = Manifest::parse(
        Some(DOCKER_MANIFEST),
        &bytes(&oci_manifest(Some(DOCKER_MANIFEST))),
    )
    .unwrap();
    assert_eq!(manifest.kind(), ManifestKind::DockerManifest);
    let list = Manifest::parse(
        Some("application/vnd.docker.distribution.manifest.list.v2+json; charset=utf-8"),
        &bytes(&oci_index(Some(DOCKER_MANIFEST_LIST))),
    )
    .unwrap();
    assert_eq!(list.kind(), ManifestKind::DockerManifestList);
}

#[test]
fn either_witness_alone_decides_the_kind() {
    let by_header = Manifest::parse(Some(OCI_INDEX), &bytes(&oci_index(None))).unwrap();
    assert_eq!(by_header.kind(), ManifestKind::OciIndex);
    let by_document = Manifest::parse(None, &bytes(&oci_manifest(Some(OCI_MANIFEST)))).unwrap();
    assert_eq!(by_document.kind(), ManifestKind::OciManifest);
    assert!(matches!(
        Manifest::parse(None, &bytes(&oci_manifest(None))),
        Err(ManifestError::MissingMediaType)
    ));
}

#[test]
fn disagreeing_witnesses_are_refused() {
    assert!(matches!(
        Manifest::parse(Some(OCI_MANIFEST), &bytes(&oci_index(Some(OCI_INDEX)))),
        Err(ManifestError::MediaTypeMismatch { .. })
    ));
    assert!(matches!(
        Manifest::parse(
            Some(OCI_MANIFEST),
            &bytes(&oci_manifest(Some(DOCKER_MANIFEST)))
        ),
        Err(ManifestError::MediaTypeMismatch { .. })
    ));
}

#[test]
fn unknown_types_are_refused() {
    for (header, document) in [
        (Some("application/json"), Some(OCI_MANIFEST)),
        (
            Some(OCI_MANIFEST),
            Some("application/vnd.docker.distribution.manifest.v1+prettyjws"),
        ),
        (None, Some("text/html")),
    ] {
        let mut doc = oci_manifest(None);
        if let Some(document) = document {
            doc["mediaType"] = document.into();
        }
        assert!(
            matches!(
                Manifest::parse(header, &bytes(&doc)),
                Err(ManifestError::UnknownMediaType(_))
            ),
            "{header:?} / {document:?}"
        );
    }
}

#[test]
fn mixed_shapes_are_ambiguous() {
    let mut index_with_config = oci_index(Some(OCI_INDEX));
    index_with_config["config"] = oci_manifest(None)["config"].clone();
    assert!(matches!(
        Manifest::parse(Some(OCI_INDEX), &bytes(&index_with_config)),
        Err(ManifestError::AmbiguousKind {
            field: "config",
            ..
        })
    ));
    let mut manifest_with_manifests = oci_manifest(Some(OCI_MANIFEST));
    manifest_with_manifests["manifests"] = serde_json::json!([]);
    assert!(matches!(
        Manifest::parse(None, &bytes(&manifest_with_manifests)),
        Err(ManifestError::AmbiguousKind {
            field: "manifests",
            ..
        })
    ));
}

#[test]
fn malformed_documents_are_json_errors() {
    let mut no_layers = oci_manifest(Some(OCI_MANIFEST));
    no_layers.as_object_mut().unwrap().remove("layers");
    let mut bad_digest = oci_manifest(Some(OCI_MANIFEST));
    bad_digest["config"]["digest"] = "sha256:nothex".into();
    for input in [
        b"".to_vec(),
        b"{".to_vec(),
        b"[]".to_vec(),
        bytes(&no_layers),
        bytes(&bad_digest),
    ] {
        assert!(
            matches!(
                Manifest::parse(Some(OCI_MANIFEST), &input),
                Err(ManifestError::Json(_))
            ),
            "{}",
            String::from_utf8_lossy(&input)
        );
    }
    let mut v1 = oci_manifest(Some(OCI_MANIFEST));
    v1["schemaVersion"] = 1.into();
    assert!(matches!(
        Manifest::parse(None, &bytes(&v1)),
        Err(ManifestError::SchemaVersion(1))
    ));
}

/// containerd reads manifests with Go's encoding/json: a key that names a field but for
/// case is that field to it. An index entry whose `Digest` names other content than its
/// `digest` would be one manifest to crigate and another to the runtime.
#[test]
fn keys_that_name_a_field_but_for_case_are_refused() {
    let evil = digest(b"evil");
    let variants: [fn(&mut serde_json::Value, &str); 5] = [
        |doc, evil| doc["manifests"][0]["Digest"] = evil.into(),
        |doc, _| doc["manifests"][0]["Platform"] = serde_json::json!({"os": "linux"}),
        |doc, _| doc["manifests"][0]["platform"]["ARCHITECTURE"] = "amd64".into(),
        |doc, _| doc["Manifests"] = serde_json::json!([]),
        |doc, _| doc["manifests"][0]["ſize"] = 7.into(),
    ];
    for (n, vary) in variants.into_iter().enumerate() {
        let mut doc = oci_index(Some(OCI_INDEX));
        vary(&mut doc, &evil);
        assert!(
            matches!(
                Manifest::parse(Some(OCI_INDEX), &bytes(&doc)),
                Err(ManifestError::CaseVariant { .. })
            ),
            "variant {n}: {doc}"
        );
    }
    let mut doc = oci_manifest(Some(OCI_MANIFEST));
    doc["config"]["MediaType"] = "application/vnd.oci.image.config.v1+json".into();
    assert!(matches!(
        Manifest::parse(Some(OCI_MANIFEST), &bytes(&doc)),
        Err(ManifestError::CaseVariant {
            field: "mediaType",
            ..
        })
    ));
    // Annotation keys are free-form, and other keys are read by neither.
    let mut doc = oci_index(Some(OCI_INDEX));
    doc["annotations"] = serde_json::json!({"Digest": "x", "MediaType": "y"});
    doc["manifests"][0]["annotations"] = serde_json::json!({"Platform": "z"});
    doc["extension"] = serde_json::json!({"anything": 1});
    assert!(Manifest::parse(Some(OCI_INDEX), &bytes(&doc)).is_ok());
}

#[test]
fn size_limit_holds_at_its_edges() {
    let doc = bytes(&oci_manifest(Some(OCI_MANIFEST)));
    let padded = |len: usize| {
        let mut input = doc.clone();
        input.resize(len, b' ');
        input
    };
    assert!(Manifest::parse(None, &padded(MAX_MANIFEST_BYTES - 1)).is_ok());
    assert!(Manifest::parse(None, &padded(MAX_MANIFEST_BYTES)).is_ok());
    assert!(matches!(
        Manifest::parse(None, &padded(MAX_MANIFEST_BYTES + 1)),
        Err(ManifestError::TooLarge { len }) if len == MAX_MANIFEST_BYTES + 1
    ));
}

#[test]
fn fuzz_entry_survives_odd_input() {
    for input in [
        &b""[..],
        b"null",
        b"{\"schemaVersion\":2}",
        b"{\"manifests\":[]}",
        &[0xff; 8],
    ] {
        fuzz_parse(input);
    }
    let deep = "[".repeat(10_000);
    fuzz_parse(deep.as_bytes());
}

#[test]
fn a_checkpoint_is_told_by_its_documents_own_annotation() {
    for (key, checkpoint) in [
        ("org.criu.checkpoint.container.name", true),
        ("checkpointctl.annotation.checkpoint.name", true),
        ("io.kubernetes.cri-o.annotations.checkpoint.name", true),
        ("org.opencontainers.image.title", false),
    ] {
        for mut doc in [oci_manifest(Some(OCI_MANIFEST)), oci_index(Some(OCI_INDEX))] {
            doc["annotations"] = serde_json::json!({ key: "app" });
            let parsed = Manifest::parse(None, &bytes(&doc)).unwrap();
            assert_eq!(parsed.is_checkpoint(), checkpoint, "{key}: {doc}");
        }
    }
    // An annotation on a layer or a listed manifest is not the document's.
    let mut doc = oci_index(Some(OCI_INDEX));
    doc["manifests"][0]["annotations"] =
        serde_json::json!({ "org.criu.checkpoint.container.name": "app" });
    assert!(!Manifest::parse(None, &bytes(&doc)).unwrap().is_checkpoint());
}
