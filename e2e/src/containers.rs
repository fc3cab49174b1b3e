//! The services as containers of the images under test, on a private Docker network, for
//! the container tests: [`Pipeline::in_containers`](crate::Pipeline::in_containers) drives
//! them as [`Pipeline::new`](crate::Pipeline::new) drives processes.
//!
//! `RECIPE_MESH_IMAGES=REPOSITORY:TAG` names the images (`scripts/test.sh` builds them with
//! `scripts/build-images.sh` and sets it); without it or without a Docker engine,
//! [`images_under_test`] says why and the tests return early. Containers run hardened as a
//! Kubernetes pod of the chart would: read-only root filesystem, every capability dropped, no
//! privilege escalation, the image's own non-root user.

use crate::Service;
use anyhow::{Context, bail};
use std::process::{Command, Output};

/// The hardening every container gets.
pub const HARDENING: [&str; 5] = [
    "--read-only",
    "--cap-drop",
    "ALL",
    "--security-opt",
    "no-new-privileges",
];

/// The comparison service's gRPC port inside its container (`docker/Dockerfile`); the other
/// services serve only their admin port.
pub const COMPARISON_GRPC_PORT: u16 = 50051;

/// Each service's admin port inside its container (the images' defaults).
pub fn admin_port(service: Service) -> u16 {
    match service {
        Service::Comparison => 9091,
        Service::Sender => 9092,
        Service::Watcher => 9093,
    }
}

/// The three images of one build.
#[derive(Debug, Clone)]
pub struct Images {
    pub repository: String,
    pub tag: String,
}

impl Images {
    pub fn of(&self, service: Service) -> String {
        format!("{}/{}:{}", self.repository, service.binary(), self.tag)
    }
}

/// The images to test, or why there are none.
pub fn images_under_test() -> Result<Images, String> {
    let Some(name) = std::env::var("RECIPE_MESH_IMAGES")
        .ok()
        .filter(|v| !v.is_empty())
    else {
        return Err(
            "RECIPE_MESH_IMAGES is not set: scripts/test.sh builds the images and sets \
                    it when a Docker engine answers"
                .into(),
        );
    };
    let (repository, tag) = name
        .rsplit_once(':')
        .ok_or_else(|| format!("RECIPE_MESH_IMAGES={name} is not REPOSITORY:TAG"))?;
    if let Err(e) = docker(&["version", "--format", "{{.Server.Version}}"]) {
        return Err(format!("no Docker engine answers: {e:#}"));
    }
    Ok(Images {
        repository: repository.to_string(),
        tag: tag.to_string(),
    })
}

/// Runs `docker ARGS` and returns its stdout, trimmed; an error carries its stderr.
pub fn docker(args: &[&str]) -> anyhow::Result<String> {
    let out = docker_output(args)?;
    if !out.status.success() {
        bail!(
            "docker {} exited with {}: {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// Runs `docker ARGS` whatever its exit status.
pub fn docker_output(args: &[&str]) -> anyhow::Result<Output> {
    Command::new("docker")
        .args(args)
        .output()
        .context("run the docker CLI")
}

/// A user-defined bridge network, removed on drop. Its containers find each other by name
/// (Docker's DNS) and reach the host, where the emulator runs, through the gateway.
pub struct Network {
    pub name: String,
    pub gateway: String,
}

impl Network {
    pub fn create(name: &str) -> anyhow::Result<Self> {
        docker(&["network", "create", "--driver", "bridge", name])?;
        let gateway = docker(&[
            "network",
            "inspect",
            "--format",
            "{{range .IPAM.Config}}{{.Gateway}}{{end}}",
            name,
        ])?;
        if gateway.is_empty() {
            bail!("network {name} has no gateway address");
        }
        Ok(Self {
            name: name.to_string(),
            gateway,
        })
    }

    /// The emulator as containers on this network reach it: `AWS_ENDPOINT_URL`'s port on the
    /// gateway, which `scripts/test.sh` makes moto listen on when Docker is present.
    pub fn emulator_endpoint(&self) -> anyhow::Result<String> {
        let url = std::env::var("AWS_ENDPOINT_URL").context("AWS_ENDPOINT_URL is not set")?;
        let port = url
            .rsplit_once(':')
            .and_then(|(_, p)| p.trim_end_matches('/').parse::<u16>().ok())
            .with_context(|| format!("no port in AWS_ENDPOINT_URL={url}"))?;
        Ok(format!("http://{}:{port}", self.gateway))
    }
}

impl Drop for Network {
    fn drop(&mut self) {
        let _ = docker(&["network", "rm", &self.name]);
    }
}

/// What `docker image inspect` tells of an image.
#[derive(Debug)]
pub struct ImageFacts {
    pub size: u64,
    pub user: String,
    pub labels: serde_json::Map<String, serde_json::Value>,
    pub exposed_ports: Vec<String>,
    pub entrypoint: Vec<String>,
    /// The digests of its layers, base first.
    pub layers: Vec<String>,
}

pub fn inspect_image(image: &str) -> anyhow::Result<ImageFacts> {
    let json = docker(&["image", "inspect", "--format", "{{json .}}", image])?;
    let v: serde_json::Value = serde_json::from_str(&json).context("docker image inspect")?;
    let config = &v["Config"];
    let strings = |v: &serde_json::Value| -> Vec<String> {
        v.as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|s| s.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default()
    };
    Ok(ImageFacts {
        size: v["Size"].as_u64().context("image size")?,
        user: config["User"].as_str().unwrap_or_default().to_string(),
        labels: config["Labels"].as_object().cloned().unwrap_or_default(),
        exposed_ports: config["ExposedPorts"]
            .as_object()
            .map(|m| m.keys().cloned().collect())
            .unwrap_or_default(),
        entrypoint: strings(&config["Entrypoint"]),
        layers: strings(&v["RootFS"]["Layers"]),
    })
}

/// A container's state: running, and the exit code once it stopped.
pub fn state(container: &str) -> anyhow::Result<(bool, i64)> {
    let s = docker(&[
        "inspect",
        "--format",
        "{{.State.Running}} {{.State.ExitCode}}",
        container,
    ])?;
    let (running, code) = s
        .split_once(' ')
        .with_context(|| format!("container state {s:?}"))?;
    Ok((running == "true", code.parse().unwrap_or(-1)))
}

/// Everything a container wrote to stdout and stderr.
pub fn logs(container: &str) -> String {
    match docker_output(&["logs", container]) {
        Ok(out) => format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
        Err(e) => format!("(no logs of {container}: {e:#})"),
    }
}
