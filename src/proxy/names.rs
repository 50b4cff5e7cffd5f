//! Naming a pinned pull's image in the runtime as the caller asked for it.
//!
//! An allowed PullImage is forwarded pinned to `repo@sha256:…`, so the runtime records the
//! image under its digest and id only. kubelet then asks ImageStatus for the name it pulled
//! (`repo:tag`) before starting the next pod with `imagePullPolicy: IfNotPresent`; without
//! that name it would pull again, every time. After the runtime reports the pinned pull
//! done, crigate gives the image the requested tag through containerd's images API, as
//! containerd's CRI plugin does for a pull it makes itself (`createImageReference` in
//! `pkg/cri/server/image_pull.go`: same target descriptor, label
//! `io.cri-containerd.image=managed`). The CRI plugin learns of the new name from
//! containerd's `/images/create` event, handled on a goroutine of its own after the
//! images API has answered (`pkg/cri/server/events.go`); a pull the runtime makes itself
//! updates that view before it answers. So crigate waits, briefly, until the runtime's
//! ImageStatus finds the image by the new name before the pull is answered: a client that
//! asks at once (crictl, the conformance suite's "pull, then create by tag") finds it, as
//! it would without crigate. The tag names exactly the bytes that were verified: its
//! target is the pinned image's descriptor, never a registry lookup.

use std::collections::HashMap;
use std::time::Duration;

use containerd_client::services::v1::images_client::ImagesClient;
use containerd_client::services::v1::{
    CreateImageRequest, GetImageRequest, Image, UpdateImageRequest,
};
use k8s_cri::v1::image_service_client::ImageServiceClient;
use k8s_cri::v1::{ImageSpec, ImageStatusRequest};
use tonic::transport::Channel;
use tonic::Code;

use crate::runtime::namespaced;

/// The label containerd's CRI plugin puts on images it manages; ImageStatus and ListImages
/// show only images carrying it.
const CRI_IMAGE_LABEL: (&str, &str) = ("io.cri-containerd.image", "managed");

/// Why the requested name could not be given.
#[derive(Debug, thiserror::Error)]
pub enum NameError {
    #[error("cannot reach containerd's images API: {0}")]
    Unreachable(tonic::Status),
    #[error("containerd has no image {name}: {status}")]
    Missing { name: String, status: tonic::Status },
    #[error("containerd refused to name {name}: {status}")]
    Refused { name: String, status: tonic::Status },
    #[error("containerd did not answer within {0:?}")]
    Timeout(Duration),
    #[error("the runtime's ImageStatus failed: {0}")]
    ImageStatus(tonic::Status),
    #[error("the runtime's ImageStatus did not find {name} as image {id} within {timeout:?}")]
    NotSeen {
        name: String,
        id: String,
        timeout: Duration,
    },
}

/// How long a pull's answer waits for the runtime's ImageStatus to find the new name.
/// containerd handles the image event within milliseconds; a runtime that never does
/// (one without the CRI plugin's event handling) costs each pull this much once.
pub const SEEN_TIMEOUT: Duration = Duration::from_secs(2);

/// The first pause between ImageStatus calls while waiting; it doubles up to
/// [`MAX_SEEN_INTERVAL`].
const FIRST_SEEN_INTERVAL: Duration = Duration::from_millis(1);
const MAX_SEEN_INTERVAL: Duration = Duration::from_millis(50);

/// Gives the image the runtime holds as `pinned` the name `name` as well, through
/// `channel` (the runtime's socket). A name that already points at that image with the
/// CRI label is left as it is, so a repeated pull writes nothing.
///
/// # Errors
///
/// containerd cannot be reached, does not have `pinned`, or refuses the name; the pull
/// itself has succeeded either way.
pub async fn name_image(
    channel: Channel,
    name: &str,
    pinned: &str,
    timeout: Duration,
) -> Result<(), NameError> {
    tokio::time::timeout(timeout, name_image_inner(channel, name, pinned))
        .await
        .map_err(|_| NameError::Timeout(timeout))?
}

async fn name_image_inner(channel: Channel, name: &str, pinned: &str) -> Result<(), NameError> {
    let mut images = ImagesClient::new(channel);
    let target = images
        .get(namespaced(GetImageRequest {
            name: pinned.to_owned(),
        }))
        .await
        .map_err(|status| match status.code() {
            Code::Unavailable => NameError::Unreachable(status),
            _ => NameError::Missing {
                name: pinned.to_owned(),
                status,
            },
        })?
        .into_inner()
        .image
        .and_then(|image| image.target)
        .ok_or_else(|| NameError::Missing {
            name: pinned.to_owned(),
            status: tonic::Status::not_found("no target descriptor"),
        })?;
    if let Ok(existing) = images
        .get(namespaced(GetImageRequest {
            name: name.to_owned(),
        }))
        .await
    {
        let named = existing.into_inner().image.is_some_and(|image| {
            image.target.as_ref() == Some(&target)
                && image.labels.get(CRI_IMAGE_LABEL.0).map(String::as_str)
                    == Some(CRI_IMAGE_LABEL.1)
        });
        if named {
            return Ok(());
        }
    }
    let image = Image {
        name: name.to_owned(),
        labels: HashMap::from([(CRI_IMAGE_LABEL.0.to_owned(), CRI_IMAGE_LABEL.1.to_owned())]),
        target: Some(target),
        ..Default::default()
    };
    let refused = |status| NameError::Refused {
        name: name.to_owned(),
        status,
    };
    match images
        .create(namespaced(CreateImageRequest {
            image: Some(image.clone()),
            ..Default::default()
        }))
        .await
    {
        Ok(_) => Ok(()),
        // The name exists (an earlier pull, or the tag moved): point it at what was
        // verified now.
        Err(status) if status.code() == Code::AlreadyExists => images
            .update(namespaced(UpdateImageRequest {
                image: Some(image),
                update_mask: Some(prost_types::FieldMask {
                    paths: vec!["target".to_owned(), format!("labels.{}", CRI_IMAGE_LABEL.0)],
                }),
                ..Default::default()
            }))
            .await
            .map(|_| ())
            .map_err(refused),
        Err(status) => Err(refused(status)),
    }
}

/// Waits until the runtime's CRI ImageStatus of `name` answers with image `id`, asking
/// again with growing pauses, for at most `timeout`. A runtime that does not serve
/// `runtime.v1` ImageService (UNIMPLEMENTED) is not waited for.
///
/// # Errors
///
/// ImageStatus failed otherwise, or did not find `name` as `id` in time.
pub async fn await_seen(
    channel: Channel,
    name: &str,
    id: &str,
    timeout: Duration,
) -> Result<(), NameError> {
    let not_seen = || NameError::NotSeen {
        name: name.to_owned(),
        id: id.to_owned(),
        timeout,
    };
    let mut client = ImageServiceClient::new(channel);
    let ask = async {
        let mut pause = FIRST_SEEN_INTERVAL;
        loop {
            let found = client
                .image_status(ImageStatusRequest {
                    image: Some(ImageSpec {
                        image: name.to_owned(),
                        ..Default::default()
                    }),
                    verbose: false,
                })
                .await;
            match found {
                Ok(answer) if answer.get_ref().image.as_ref().is_some_and(|i| i.id == id) => {
                    return Ok(());
                }
                Ok(_) => {}
                Err(status) if status.code() == Code::Unimplemented => return Ok(()),
                Err(status) => return Err(NameError::ImageStatus(status)),
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(MAX_SEEN_INTERVAL);
        }
    };
    tokio::time::timeout(timeout, ask)
        .await
        .map_err(|_| not_seen())?
}
