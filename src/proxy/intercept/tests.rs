use k8s_cri::{v1, v1alpha2};
use prost::Message;

use super::*;

const CALLER: Caller = Caller {
    pid: Some(42),
    uid: 0,
    gid: 0,
};

fn framed(message: &[u8]) -> Vec<u8> {
    frame_parts(&[message]).to_vec()
}

fn sandbox(namespace: &str) -> v1::PodSandboxConfig {
    v1::PodSandboxConfig {
        metadata: Some(v1::PodSandboxMetadata {
            name: "web-0".into(),
            uid: "uid-1".into(),
            namespace: namespace.into(),
            attempt: 0,
        }),
        ..Default::default()
    }
}

fn v1_pull(image: &str) -> v1::PullImageRequest {
    v1::PullImageRequest {
        image: Some(v1::ImageSpec {
            image: image.into(),
            user_specified_image: "app:v1".into(),
            ..Default::default()
        }),
        auth: Some(v1::AuthConfig {
            username: "u".into(),
            password: "secret".into(),
            ..Default::default()
        }),
        sandbox_config: Some(sandbox("prod")),
    }
}

const PULL: Intercepted = Intercepted {
    api: ApiVersion::V1,
    phase: Phase::Pull,
};
const CREATE: Intercepted = Intercepted {
    api: ApiVersion::V1,
    phase: Phase::Create,
};
const ALPHA_PULL: Intercepted = Intercepted {
    api: ApiVersion::V1Alpha2,
    phase: Phase::Pull,
};
const ALPHA_CREATE: Intercepted = Intercepted {
    api: ApiVersion::V1Alpha2,
    phase: Phase::Create,
};

#[test]
fn v1_pull_yields_image_and_pod() {
    let body = framed(&v1_pull("127.0.0.1:5000/app:v1").encode_to_vec());
    let ctx = decode(PULL, &body, CALLER).unwrap();
    assert_eq!(ctx.phase, Phase::Pull);
    assert_eq!(ctx.api, ApiVersion::V1);
    assert_eq!(ctx.image, "127.0.0.1:5000/app:v1");
    assert_eq!(ctx.user_specified_image.as_deref(), Some("app:v1"));
    assert_eq!(ctx.namespace.as_deref(), Some("prod"));
    assert_eq!(ctx.pod_name.as_deref(), Some("web-0"));
    assert_eq!(ctx.pod_uid.as_deref(), Some("uid-1"));
    assert_eq!(ctx.caller, CALLER);
}

#[test]
fn v1_create_yields_container_and_sandbox() {
    let request = v1::CreateContainerRequest {
        pod_sandbox_id: "sb-1".into(),
        config: Some(v1::ContainerConfig {
            metadata: Some(v1::ContainerMetadata {
                name: "app".into(),
                attempt: 0,
            }),
            image: Some(v1::ImageSpec {
                image: "sha256:abc".into(),
                ..Default::default()
            }),
            ..Default::default()
        }),
        sandbox_config: Some(sandbox("team-a")),
    };
    let ctx = decode(CREATE, &framed(&request.encode_to_vec()), CALLER).unwrap();
    assert_eq!(ctx.phase, Phase::Create);
    assert_eq!(ctx.image, "sha256:abc");
    assert_eq!(ctx.user_specified_image, None);
    assert_eq!(ctx.container_name.as_deref(), Some("app"));
    assert_eq!(ctx.pod_sandbox_id.as_deref(), Some("sb-1"));
    assert_eq!(ctx.namespace.as_deref(), Some("team-a"));
}

#[test]
fn v1alpha2_requests_are_decoded_like_v1() {
    let pull = v1alpha2::PullImageRequest {
        image: Some(v1alpha2::ImageSpec {
            image: "busybox".into(),
            ..Default::default()
        }),
        auth: None,
        sandbox_config: Some(v1alpha2::PodSandboxConfig {
            metadata: Some(v1alpha2::PodSandboxMetadata {
                name: "p".into(),
                uid: "u".into(),
                namespace: "old".into(),
                attempt: 1,
            }),
            ..Default::default()
        }),
    };
    let ctx = decode(ALPHA_PULL, &framed(&pull.encode_to_vec()), CALLER).unwrap();
    assert_eq!((ctx.api, ctx.phase), (ApiVersion::V1Alpha2, Phase::Pull));
    assert_eq!(ctx.image, "busybox");
    assert_eq!(ctx.namespace.as_deref(), Some("old"));

    let create = v1alpha2::CreateContainerRequest {
        pod_sandbox_id: "sb".into(),
        config: Some(v1alpha2::ContainerConfig {
            image: Some(v1alpha2::ImageSpec {
                image: "busybox".into(),
                ..Default::default()
            }),
            ..Default::default()
        }),
        sandbox_config: None,
    };
    let ctx = decode(ALPHA_CREATE, &framed(&create.encode_to_vec()), CALLER).unwrap();
    assert_eq!((ctx.api, ctx.phase), (ApiVersion::V1Alpha2, Phase::Create));
    assert_eq!(ctx.namespace, None);
}

#[test]
fn request_without_image_is_refused() {
    let body = framed(&v1::PullImageRequest::default().encode_to_vec());
    assert_eq!(
        decode(PULL, &body, CALLER),
        Err(DecodeError::MissingImage("PullImageRequest"))
    );
    let body = framed(&v1::CreateContainerRequest::default().encode_to_vec());
    assert_eq!(
        decode(CREATE, &body, CALLER),
        Err(DecodeError::MissingImage("CreateContainerRequest"))
    );
}

#[test]
fn framing_errors_are_specific() {
    assert_eq!(decode(PULL, &[], CALLER), Err(DecodeError::Truncated(0)));
    assert_eq!(
        decode(PULL, &[0, 0, 0], CALLER),
        Err(DecodeError::Truncated(3))
    );
    assert_eq!(
        decode(PULL, &[0, 0, 0, 0, 9, 1, 2], CALLER),
        Err(DecodeError::LengthMismatch {
            declared: 9,
            actual: 2
        })
    );
    assert_eq!(
        decode(PULL, &[1, 0, 0, 0, 0], CALLER),
        Err(DecodeError::Compressed)
    );
    assert_eq!(
        decode(PULL, &[7, 0, 0, 0, 0], CALLER),
        Err(DecodeError::BadFlag(7))
    );
}

#[test]
fn two_messages_in_a_unary_body_are_refused() {
    let one = framed(&v1_pull("a").encode_to_vec());
    let two = [one.clone(), one].concat();
    assert!(matches!(
        decode(PULL, &two, CALLER),
        Err(DecodeError::LengthMismatch { .. })
    ));
}

#[test]
fn invalid_protobuf_is_refused() {
    // Field 1, wire type 2 (length-delimited), declaring 100 bytes that are not there.
    let body = framed(&[0x0a, 100, 1, 2, 3]);
    assert!(matches!(
        decode(PULL, &body, CALLER),
        Err(DecodeError::Protobuf { .. })
    ));
}

#[test]
fn pin_replaces_only_the_image_and_keeps_unknown_fields() {
    let mut message = v1_pull("127.0.0.1:5000/app:v1").encode_to_vec();
    // Field 99, varint 7: a field a newer kubelet might send.
    message.extend_from_slice(&[0x98, 0x06, 0x07]);
    let body = framed(&message);
    let pinned = pin(PULL, &body, "127.0.0.1:5000/app@sha256:0123");

    let decoded = decode(PULL, &pinned, CALLER).unwrap();
    assert_eq!(decoded.image, "127.0.0.1:5000/app@sha256:0123");
    assert_eq!(decoded.user_specified_image.as_deref(), Some("app:v1"));
    assert_eq!(decoded.namespace.as_deref(), Some("prod"));
    // The original message travels byte for byte, unknown field and credentials included.
    assert!(pinned[PREFIX_LEN..].starts_with(&message));
    let full = v1::PullImageRequest::decode(&pinned[PREFIX_LEN..]).unwrap();
    assert_eq!(full.auth.unwrap().password, "secret");
}

#[test]
fn pin_works_for_every_gated_method() {
    let create = v1::CreateContainerRequest {
        pod_sandbox_id: "sb".into(),
        config: Some(v1::ContainerConfig {
            image: Some(v1::ImageSpec {
                image: "app:v1".into(),
                ..Default::default()
            }),
            command: vec!["/pause".into()],
            ..Default::default()
        }),
        sandbox_config: None,
    };
    let body = framed(&create.encode_to_vec());
    for method in [CREATE, ALPHA_CREATE] {
        let pinned = pin(method, &body, "app@sha256:ff");
        let ctx = decode(method, &pinned, CALLER).unwrap();
        assert_eq!(ctx.image, "app@sha256:ff");
        assert_eq!(ctx.pod_sandbox_id.as_deref(), Some("sb"));
    }
    let full = v1::CreateContainerRequest::decode(&pin(CREATE, &body, "x")[PREFIX_LEN..]).unwrap();
    assert_eq!(full.config.unwrap().command, vec!["/pause".to_owned()]);
    let pull = framed(&v1_pull("a").encode_to_vec());
    assert_eq!(
        decode(ALPHA_PULL, &pin(ALPHA_PULL, &pull, "b"), CALLER)
            .unwrap()
            .image,
        "b"
    );
}

#[test]
fn pull_credentials_are_carried_and_never_printed() {
    let body = framed(&v1_pull("registry.example/private:v1").encode_to_vec());
    let ctx = decode(PULL, &body, CALLER).unwrap();
    assert!(matches!(
        ctx.credentials,
        Some(crate::registry::Credentials::Basic { ref username, .. }) if username == "u"
    ));
    let printed = format!("{ctx:?}");
    assert!(
        !printed.contains("secret"),
        "the password leaked into Debug: {printed}"
    );
}

#[test]
fn malformed_pull_credentials_are_refused() {
    let mut request = v1_pull("registry.example/private:v1");
    request.auth = Some(v1::AuthConfig {
        auth: "%%% not base64".into(),
        ..Default::default()
    });
    let body = framed(&request.encode_to_vec());
    assert!(matches!(
        decode(PULL, &body, CALLER),
        Err(DecodeError::Credentials(_))
    ));
    // Create carries none.
    let create = v1::CreateContainerRequest {
        config: Some(v1::ContainerConfig {
            image: Some(v1::ImageSpec {
                image: "x".into(),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    };
    let ctx = decode(CREATE, &framed(&create.encode_to_vec()), CALLER).unwrap();
    assert_eq!(ctx.credentials, None);
}

type V1Fields = CreateFields<v1::ImageSpec, v1::ContainerMetadata, v1::PodSandboxMetadata>;

/// Whatever a full decode accepts, the fields read from the wire are the ones it has.
fn agrees_with_the_full_decode(bytes: &[u8]) {
    let fast = V1Fields::read(bytes);
    let Ok(full) = v1::CreateContainerRequest::decode(bytes) else {
        return;
    };
    let fast = fast
        .unwrap_or_else(|e| panic!("the full decode accepted what the wire reader refused: {e}"));
    let config = full.config.clone();
    assert_eq!(fast.pod_sandbox_id, full.pod_sandbox_id);
    assert_eq!(fast.image, config.as_ref().and_then(|c| c.image.clone()));
    assert_eq!(fast.container, config.and_then(|c| c.metadata));
    assert_eq!(fast.pod, full.sandbox_config.and_then(|s| s.metadata));
}

fn create_request(
    id: String,
    name: Option<String>,
    image: Option<(String, String)>,
    namespace: Option<String>,
    labels: Vec<(String, String)>,
) -> v1::CreateContainerRequest {
    v1::CreateContainerRequest {
        pod_sandbox_id: id,
        config: Some(v1::ContainerConfig {
            metadata: name.map(|name| v1::ContainerMetadata { name, attempt: 3 }),
            image: image.map(|(image, user_specified_image)| v1::ImageSpec {
                image,
                user_specified_image,
                ..Default::default()
            }),
            labels: labels.into_iter().collect(),
            envs: vec![v1::KeyValue {
                key: "A".into(),
                value: "b".into(),
            }],
            ..Default::default()
        }),
        sandbox_config: namespace.map(|namespace| v1::PodSandboxConfig {
            metadata: Some(v1::PodSandboxMetadata {
                namespace,
                name: "web".into(),
                ..Default::default()
            }),
            hostname: "h".into(),
            ..Default::default()
        }),
    }
}

fn arb_create() -> impl Strategy<Value = v1::CreateContainerRequest> {
    (
        "[a-z0-9]{0,12}",
        proptest::option::of("[a-z0-9-]{0,12}"),
        proptest::option::of(("[a-z0-9./:@-]{0,40}", "[a-z0-9./:-]{0,20}")),
        proptest::option::of("[a-z0-9-]{0,12}"),
        proptest::collection::vec(("[a-z]{1,8}", "[a-z]{0,8}"), 0..3),
    )
        .prop_map(|(id, name, image, namespace, labels)| {
            create_request(id, name, image, namespace, labels)
        })
}

use proptest::prelude::*;

proptest! {
    /// Several encodings in a row are one message merged (how a pin is appended, and how
    /// a crafted request might try to show crigate and the runtime different images).
    #[test]
    fn the_wire_reader_reads_merged_requests_as_a_full_decode_does(
        parts in proptest::collection::vec(arb_create(), 1..4),
        tail in proptest::collection::vec(any::<u8>(), 0..8),
    ) {
        let mut bytes: Vec<u8> = parts.iter().flat_map(Message::encode_to_vec).collect();
        agrees_with_the_full_decode(&bytes);
        bytes.extend_from_slice(&tail);
        agrees_with_the_full_decode(&bytes);
    }

    #[test]
    fn the_wire_reader_agrees_with_a_full_decode_on_any_bytes(
        bytes in proptest::collection::vec(any::<u8>(), 0..256),
    ) {
        agrees_with_the_full_decode(&bytes);
    }

    #[test]
    fn the_wire_reader_agrees_on_damaged_requests(
        request in arb_create(),
        at in any::<prop::sample::Index>(),
        byte in any::<u8>(),
    ) {
        let mut bytes = request.encode_to_vec();
        if !bytes.is_empty() {
            let i = at.index(bytes.len());
            bytes[i] = byte;
        }
        agrees_with_the_full_decode(&bytes);
    }
}

#[test]
fn the_wire_reader_refuses_what_cannot_be_read() {
    for (bytes, why) in [
        (&b"\x12\x05\x0a\x03ab"[..], "config runs past the end"),
        (b"\x0a\x02\xff\xfe", "pod_sandbox_id is not UTF-8"),
        (b"\x10\x01", "config as a varint"),
        (b"\x12\x02\x10\x01", "image as a varint"),
        (b"\x1a\x02\x08\x01", "sandbox metadata as a varint"),
        (b"\x0b\x0c", "a group"),
        (
            b"\x80\x80\x80\x80\x80\x80\x80\x80\x80\x80\x01",
            "an overlong key",
        ),
        (b"\x00", "field number zero"),
    ] {
        assert!(V1Fields::read(bytes).is_err(), "{why}");
        assert!(
            v1::CreateContainerRequest::decode(bytes).is_err(),
            "{why}: the full decode takes it"
        );
    }
}
