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
            server_address: "https://registry.example".into(),
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
        sandbox_config: None,
        ..create_with_mounts(Vec::new())
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
    let credentials = ctx.credentials.as_ref().unwrap();
    assert!(matches!(
        credentials.credentials,
        crate::registry::Credentials::Basic { ref username, .. } if username == "u"
    ));
    // The host they are for is carried too: only it gets them.
    assert_eq!(credentials.host.as_deref(), Some("registry.example"));
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
    let images = full
        .config
        .iter()
        .flat_map(|c| &c.mounts)
        .filter(|m| m.image.is_some())
        .count();
    if images > MAX_IMAGE_VOLUMES {
        assert!(matches!(fast, Err(DecodeError::TooManyImageVolumes)));
        return;
    }
    let fast = fast
        .unwrap_or_else(|e| panic!("the full decode accepted what the wire reader refused: {e}"));
    let config = full.config.clone();
    assert_eq!(fast.pod_sandbox_id, full.pod_sandbox_id);
    assert_eq!(fast.image, config.as_ref().and_then(|c| c.image.clone()));
    assert_eq!(fast.container, config.clone().and_then(|c| c.metadata));
    assert_eq!(fast.pod, full.sandbox_config.and_then(|s| s.metadata));
    let volumes: Vec<(usize, String, Option<v1::ImageSpec>)> = config
        .map(|c| c.mounts)
        .unwrap_or_default()
        .into_iter()
        .enumerate()
        .filter(|(_, m)| m.image.is_some())
        .map(|(i, m)| (i, m.container_path, m.image))
        .collect();
    let fast_volumes: Vec<(usize, String, Option<v1::ImageSpec>)> = fast
        .mounts
        .into_iter()
        .map(|m| (m.index, m.container_path, Some(m.image)))
        .collect();
    assert_eq!(fast_volumes, volumes);
}

fn create_request(
    id: String,
    name: Option<String>,
    image: Option<(String, String)>,
    namespace: Option<String>,
    labels: Vec<(String, String)>,
    mounts: Vec<(String, Option<String>)>,
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
            mounts: mounts
                .into_iter()
                .map(|(container_path, image)| mount(&container_path, image.as_deref()))
                .collect(),
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
        proptest::collection::vec(
            ("/[a-z]{0,8}", proptest::option::of("[a-z0-9:@-]{0,20}")),
            0..3,
        ),
    )
        .prop_map(|(id, name, image, namespace, labels, mounts)| {
            create_request(id, name, image, namespace, labels, mounts)
        })
}

/// A mount of `container_path`: an image volume of `image`, else a host path.
fn mount(container_path: &str, image: Option<&str>) -> v1::Mount {
    v1::Mount {
        container_path: container_path.into(),
        host_path: if image.is_none() {
            "/srv".into()
        } else {
            String::new()
        },
        readonly: true,
        image: image.map(|image| v1::ImageSpec {
            image: image.into(),
            user_specified_image: format!("registry.example/{image}"),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn create_with_mounts(mounts: Vec<v1::Mount>) -> v1::CreateContainerRequest {
    v1::CreateContainerRequest {
        pod_sandbox_id: "sb".into(),
        config: Some(v1::ContainerConfig {
            image: Some(v1::ImageSpec {
                image: "app:v1".into(),
                ..Default::default()
            }),
            command: vec!["/pause".into()],
            mounts,
            ..Default::default()
        }),
        sandbox_config: Some(sandbox("prod")),
    }
}

#[test]
fn image_volumes_are_read_from_the_mounts_in_both_api_versions() {
    let id = format!("sha256:{}", "a".repeat(64));
    let request = create_with_mounts(vec![
        mount("/etc/hosts", None),
        mount("/models", Some(&id)),
        mount("/plugins", Some("plugins:v2")),
        // An image spec without an image names nothing the runtime could mount.
        mount("/empty", Some("")),
    ]);
    let body = framed(&request.encode_to_vec());
    for method in [CREATE, ALPHA_CREATE] {
        let ctx = decode(method, &body, CALLER).unwrap();
        assert_eq!(ctx.image, "app:v1");
        assert_eq!(
            ctx.image_volumes,
            vec![
                ImageVolume {
                    mount: 1,
                    container_path: "/models".into(),
                    image: id.clone(),
                    user_specified_image: (method == CREATE)
                        .then(|| format!("registry.example/{id}")),
                },
                ImageVolume {
                    mount: 2,
                    container_path: "/plugins".into(),
                    image: "plugins:v2".into(),
                    user_specified_image: (method == CREATE)
                        .then(|| "registry.example/plugins:v2".to_owned()),
                },
            ],
            "{method:?}"
        );
    }
    let pull = decode(PULL, &framed(&v1_pull("a").encode_to_vec()), CALLER).unwrap();
    assert!(pull.image_volumes.is_empty());
}

#[test]
fn a_create_mounting_more_images_than_the_bound_is_refused() {
    let mounts = |n: usize| {
        (0..n)
            .map(|i| mount(&format!("/v{i}"), Some("vol:v1")))
            .collect::<Vec<_>>()
    };
    let at_bound = framed(&create_with_mounts(mounts(MAX_IMAGE_VOLUMES)).encode_to_vec());
    let ctx = decode(CREATE, &at_bound, CALLER).unwrap();
    assert_eq!(ctx.image_volumes.len(), MAX_IMAGE_VOLUMES);
    let over = framed(&create_with_mounts(mounts(MAX_IMAGE_VOLUMES + 1)).encode_to_vec());
    assert_eq!(
        decode(CREATE, &over, CALLER),
        Err(DecodeError::TooManyImageVolumes)
    );
}

#[test]
fn mounts_are_counted_across_every_occurrence_of_the_config() {
    // Two encodings in a row merge: the second config's mounts follow the first's.
    let mut message = create_with_mounts(vec![mount("/a", None)]).encode_to_vec();
    message.extend(create_with_mounts(vec![mount("/b", Some("late:v1"))]).encode_to_vec());
    let ctx = decode(CREATE, &framed(&message), CALLER).unwrap();
    let full = v1::CreateContainerRequest::decode(&message[..]).unwrap();
    let mounts = full.config.unwrap().mounts;
    assert_eq!(mounts.len(), 2);
    assert_eq!(ctx.image_volumes.len(), 1);
    assert_eq!(ctx.image_volumes[0].mount, 1);
    assert_eq!(mounts[1].image.as_ref().unwrap().image, "late:v1");
}

#[test]
fn pin_volumes_replaces_only_the_pinned_mounts_images() {
    let id = format!("sha256:{}", "b".repeat(64));
    let request = create_with_mounts(vec![
        mount("/etc/hosts", None),
        mount("/models", Some("models:v1")),
        mount("/plugins", Some("plugins:v2")),
    ]);
    let mut message = request.encode_to_vec();
    // Field 99, varint 7: a field a newer kubelet might send.
    message.extend_from_slice(&[0x98, 0x06, 0x07]);
    let body = framed(&message);
    let pins = [VolumePin {
        mount: 2,
        image: id.clone(),
    }];
    let pinned = pin_volumes(&body, &pins).unwrap();

    let full = v1::CreateContainerRequest::decode(&pinned[PREFIX_LEN..]).unwrap();
    let mut expected = request.clone();
    let mounts = &mut expected.config.as_mut().unwrap().mounts;
    mounts[2].image.as_mut().unwrap().image = id.clone();
    assert_eq!(full, expected);
    // The unknown field still travels, once, at the end.
    assert!(pinned.ends_with(&[0x98, 0x06, 0x07]));
    let ctx = decode(CREATE, &pinned, CALLER).unwrap();
    assert_eq!(ctx.image_volumes[0].image, "models:v1");
    assert_eq!(ctx.image_volumes[1].image, id);
    assert_eq!(
        ctx.image_volumes[1].user_specified_image.as_deref(),
        Some("registry.example/plugins:v2")
    );

    // The container's image is pinned over the rewritten request as over any other.
    let both = pin(CREATE, &pinned, "sha256:cc");
    let ctx = decode(CREATE, &both, CALLER).unwrap();
    assert_eq!(ctx.image, "sha256:cc");
    assert_eq!(ctx.image_volumes[1].image, id);

    // Nothing pinned: the caller's bytes.
    assert_eq!(pin_volumes(&body, &[]).unwrap()[..], body[..]);
}

#[test]
fn pin_volumes_pins_a_mount_of_a_later_config_occurrence() {
    let mut message = create_with_mounts(vec![mount("/a", Some("first:v1"))]).encode_to_vec();
    message.extend(create_with_mounts(vec![mount("/b", Some("second:v1"))]).encode_to_vec());
    let pins = [VolumePin {
        mount: 1,
        image: "sha256:dd".into(),
    }];
    let pinned = pin_volumes(&framed(&message), &pins).unwrap();
    let ctx = decode(CREATE, &pinned, CALLER).unwrap();
    let images: Vec<&str> = ctx.image_volumes.iter().map(|v| v.image.as_str()).collect();
    assert_eq!(images, ["first:v1", "sha256:dd"]);
}

#[test]
fn pin_volumes_refuses_a_pin_for_a_mount_the_request_lacks() {
    let body = framed(&create_with_mounts(vec![mount("/a", Some("x:v1"))]).encode_to_vec());
    let pins = [VolumePin {
        mount: 5,
        image: "sha256:ee".into(),
    }];
    assert!(matches!(
        pin_volumes(&body, &pins),
        Err(DecodeError::Protobuf { .. })
    ));
}

#[test]
fn a_mount_image_of_the_wrong_wire_type_is_refused() {
    // Config (2) holding a mount (7) whose image (9) is a varint.
    let bytes = b"\x12\x04\x3a\x02\x48\x01";
    assert!(V1Fields::read(bytes).is_err());
    assert!(v1::CreateContainerRequest::decode(&bytes[..]).is_err());
    let body = framed(bytes);
    assert!(matches!(
        decode(CREATE, &body, CALLER),
        Err(DecodeError::Protobuf { .. })
    ));
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

    /// Pinning an image volume changes that mount's image and nothing else, however the
    /// request's mounts are spread over merged encodings.
    #[test]
    fn pinned_volumes_differ_from_the_request_only_in_their_images(
        parts in proptest::collection::vec(arb_create(), 1..3),
        choose in any::<prop::sample::Index>(),
    ) {
        let message: Vec<u8> = parts.iter().flat_map(Message::encode_to_vec).collect();
        let body = framed(&message);
        let volumes = V1Fields::read(&message).unwrap().mounts;
        prop_assume!(!volumes.is_empty());
        let chosen = &volumes[choose.index(volumes.len())];
        let pins = [VolumePin { mount: chosen.index, image: "sha256:99".into() }];
        let pinned = pin_volumes(&body, &pins).unwrap();
        let mut expected = v1::CreateContainerRequest::decode(&message[..]).unwrap();
        let mounts = &mut expected.config.as_mut().unwrap().mounts;
        mounts[chosen.index].image.as_mut().unwrap().image = "sha256:99".into();
        prop_assert_eq!(
            v1::CreateContainerRequest::decode(&pinned[PREFIX_LEN..]).unwrap(),
            expected
        );
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

/// A group (wire types 3 and 4) in a field CRI does not define is skipped whole by the
/// wire reader, as prost and Go's protobuf skip one, nested groups included; a group
/// that ends with another field's key, or an end with no start, is refused by both.
#[test]
fn unknown_groups_are_skipped_as_protobuf_skips_them() {
    let request = create_request(
        "sandbox".into(),
        Some("web".into()),
        Some(("registry.example/app:v1".into(), String::new())),
        Some("prod".into()),
        Vec::new(),
        Vec::new(),
    );
    let mut bytes = request.encode_to_vec();
    // Field 15, a group holding a varint (field 1), a nested group (field 2) holding a
    // fixed32, and a string.
    bytes.extend_from_slice(&[
        (15 << 3) | 3,
        1 << 3,
        42,
        (2 << 3) | 3,
        (1 << 3) | 5,
        1,
        2,
        3,
        4,
        (2 << 3) | 4,
        (3 << 3) | 2,
        1,
        b'x',
        (15 << 3) | 4,
    ]);
    let fields = V1Fields::read(&bytes).unwrap();
    assert_eq!(fields.pod_sandbox_id, "sandbox");
    assert!(v1::CreateContainerRequest::decode(bytes.as_slice()).is_ok());
    agrees_with_the_full_decode(&bytes);

    for tail in [
        &[(15 << 3) | 3, 1 << 3, 42, (14 << 3) | 4][..],
        &[(15 << 3) | 4][..],
        &[(15 << 3) | 3, 1 << 3, 42][..],
    ] {
        let mut damaged = request.encode_to_vec();
        damaged.extend_from_slice(tail);
        assert!(V1Fields::read(&damaged).is_err(), "{tail:?}");
        assert!(
            v1::CreateContainerRequest::decode(damaged.as_slice()).is_err(),
            "{tail:?}"
        );
    }
}
