//! Which gRPC methods crigate gates, which it knows, and which are new to it.

use crate::decision::{ApiVersion, Phase};

/// How the proxy treats one request path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Route {
    /// Decoded and decided before it is forwarded.
    Intercept(Intercepted),
    /// A CRI method crigate knows and forwards untouched.
    Known,
    /// A method of a CRI service (`runtime.*` package) that crigate does not know, such
    /// as one a newer kubelet added: forwarded or refused, as `cri.unknown_methods` says.
    UnknownCri,
    /// A method of any other service. containerd serves its native API (images, content,
    /// tasks, transfer) on the same socket as CRI; forwarding it would let a client pull
    /// and run images without passing PullImage or CreateContainer. Refused unless
    /// `cri.other_services = "forward"`.
    Other,
}

/// A gated method on one API version.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Intercepted {
    pub api: ApiVersion,
    pub phase: Phase,
}

impl Intercepted {
    /// The method's name, as messages about it give it.
    pub fn name(self) -> &'static str {
        match self.phase {
            Phase::Pull => "PullImage",
            Phase::Create => "CreateContainer",
        }
    }
}

pub const V1_PULL_IMAGE: &str = "/runtime.v1.ImageService/PullImage";
pub const V1_CREATE_CONTAINER: &str = "/runtime.v1.RuntimeService/CreateContainer";
pub const V1ALPHA2_PULL_IMAGE: &str = "/runtime.v1alpha2.ImageService/PullImage";
pub const V1ALPHA2_CREATE_CONTAINER: &str = "/runtime.v1alpha2.RuntimeService/CreateContainer";

/// Methods of `runtime.v1` (cri-api v0.33 `api.proto`) that are forwarded untouched.
const V1_FORWARDED: &[(&str, &[&str])] = &[
    (
        "runtime.v1.RuntimeService",
        &[
            "Version",
            "RunPodSandbox",
            "StopPodSandbox",
            "RemovePodSandbox",
            "PodSandboxStatus",
            "ListPodSandbox",
            "StartContainer",
            "StopContainer",
            "RemoveContainer",
            "ListContainers",
            "ContainerStatus",
            "UpdateContainerResources",
            "ReopenContainerLog",
            "ExecSync",
            "Exec",
            "Attach",
            "PortForward",
            "ContainerStats",
            "ListContainerStats",
            "PodSandboxStats",
            "ListPodSandboxStats",
            "UpdateRuntimeConfig",
            "Status",
            "CheckpointContainer",
            "GetContainerEvents",
            "ListMetricDescriptors",
            "ListPodSandboxMetrics",
            "RuntimeConfig",
            // cri-api v0.33: kubelet calls it after resizing a pod in place.
            "UpdatePodSandboxResources",
        ],
    ),
    (
        "runtime.v1.ImageService",
        &["ListImages", "ImageStatus", "RemoveImage", "ImageFsInfo"],
    ),
];

/// Methods of `runtime.v1alpha2` (containerd 1.6/1.7) that are forwarded untouched.
const V1ALPHA2_FORWARDED: &[(&str, &[&str])] = &[
    (
        "runtime.v1alpha2.RuntimeService",
        &[
            "Version",
            "RunPodSandbox",
            "StopPodSandbox",
            "RemovePodSandbox",
            "PodSandboxStatus",
            "ListPodSandbox",
            "StartContainer",
            "StopContainer",
            "RemoveContainer",
            "ListContainers",
            "ContainerStatus",
            "UpdateContainerResources",
            "ReopenContainerLog",
            "ExecSync",
            "Exec",
            "Attach",
            "PortForward",
            "ContainerStats",
            "ListContainerStats",
            "PodSandboxStats",
            "ListPodSandboxStats",
            "UpdateRuntimeConfig",
            "Status",
        ],
    ),
    (
        "runtime.v1alpha2.ImageService",
        &["ListImages", "ImageStatus", "RemoveImage", "ImageFsInfo"],
    ),
];

/// Classifies a request's `:path` the way the runtime's gRPC server (grpc-go) will
/// dispatch it: one leading `/` is dropped and the rest splits at the last `/` into
/// service and method, each compared byte for byte (no percent-decoding, query included).
/// Matching the runtime's parser is what makes the gate complete: any path the runtime
/// would dispatch to PullImage or CreateContainer is intercepted here.
pub fn route(path: &str) -> Route {
    let name = path.strip_prefix('/').unwrap_or(path);
    let Some((service, method)) = name.rsplit_once('/') else {
        return Route::Other;
    };
    let intercepted = |api, phase| Route::Intercept(Intercepted { api, phase });
    match (service, method) {
        ("runtime.v1.ImageService", "PullImage") => intercepted(ApiVersion::V1, Phase::Pull),
        ("runtime.v1.RuntimeService", "CreateContainer") => {
            intercepted(ApiVersion::V1, Phase::Create)
        }
        ("runtime.v1alpha2.ImageService", "PullImage") => {
            intercepted(ApiVersion::V1Alpha2, Phase::Pull)
        }
        ("runtime.v1alpha2.RuntimeService", "CreateContainer") => {
            intercepted(ApiVersion::V1Alpha2, Phase::Create)
        }
        _ => {
            let canonical = V1_FORWARDED
                .iter()
                .chain(V1ALPHA2_FORWARDED)
                .any(|(known, methods)| *known == service && methods.contains(&method));
            if canonical {
                Route::Known
            } else if service.starts_with("runtime.") {
                Route::UnknownCri
            } else {
                Route::Other
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_api_versions_gate_pull_and_create() {
        for (path, api, phase) in [
            (V1_PULL_IMAGE, ApiVersion::V1, Phase::Pull),
            (V1_CREATE_CONTAINER, ApiVersion::V1, Phase::Create),
            (V1ALPHA2_PULL_IMAGE, ApiVersion::V1Alpha2, Phase::Pull),
            (
                V1ALPHA2_CREATE_CONTAINER,
                ApiVersion::V1Alpha2,
                Phase::Create,
            ),
        ] {
            assert_eq!(
                route(path),
                Route::Intercept(Intercepted { api, phase }),
                "{path}"
            );
        }
    }

    #[test]
    fn ordinary_methods_are_known() {
        assert_eq!(
            route("/runtime.v1.RuntimeService/ListContainers"),
            Route::Known
        );
        assert_eq!(
            route("/runtime.v1alpha2.ImageService/ImageStatus"),
            Route::Known
        );
    }

    #[test]
    fn a_strict_node_forwards_the_pod_resize_kubelet_133_reports() {
        // Under `unknown_methods = "deny"` an unknown method is refused, and kubelet
        // (which treats this call as best effort) would never tell the runtime of a
        // pod's in-place resize.
        assert_eq!(
            route("/runtime.v1.RuntimeService/UpdatePodSandboxResources"),
            Route::Known
        );
    }

    #[test]
    fn paths_the_runtime_dispatches_to_pull_are_intercepted() {
        // grpc-go accepts a :path without its leading slash.
        assert!(matches!(
            route("runtime.v1.ImageService/PullImage"),
            Route::Intercept(_)
        ));
    }

    #[test]
    fn near_misses_are_not_the_gated_method() {
        for path in [
            "/runtime.v1.ImageService/PullImage/",
            "/runtime.v1.imageservice/PullImage",
            "/runtime.v1.RuntimeService/PullImage",
            "/runtime.v1.ImageService/PullImage?x=1",
            "/runtime.v1.ImageService/Pull%49mage",
            "/runtime.v1.RuntimeService/UpdatePodSandboxResourcesV2",
        ] {
            assert_eq!(route(path), Route::UnknownCri, "{path}");
        }
    }

    #[test]
    fn containerd_native_api_is_not_cri() {
        for path in [
            "/containerd.services.tasks.v1.Tasks/Create",
            "/containerd.services.transfer.v1.Transfer/Transfer",
            "/grpc.health.v1.Health/Check",
            "/",
            "",
            "nopath",
        ] {
            assert_eq!(route(path), Route::Other, "{path}");
        }
    }

    #[test]
    fn lists_hold_no_gated_method() {
        for (_, methods) in V1_FORWARDED.iter().chain(V1ALPHA2_FORWARDED) {
            assert!(!methods.contains(&"PullImage") && !methods.contains(&"CreateContainer"));
        }
    }
}
