//! The shipped images (`docker/Dockerfile`, built by `scripts/build-images.sh`): small,
//! labelled, non-root, without a shell and rebuilt to the same layers; and the whole pipeline running as three hardened
//! containers (read-only root filesystem, no capabilities) on a private network against the
//! emulator, storing every make exactly once although the comparison container is stopped
//! and started again mid-run.
//!
//! Both tests need the images and a Docker engine: `scripts/test.sh` builds the images when an
//! engine answers and names them in `RECIPE_MESH_IMAGES`. Without them each test prints why
//! and passes without checking anything.

use e2e::containers::{self, Images, docker, docker_output, images_under_test, inspect_image};
use e2e::workload::{makes, recipes};
use e2e::{Pipeline, Service};
use std::collections::BTreeMap;
use std::time::Duration;

/// The ceiling for each image, in bytes (as `docker image inspect` counts them).
const MAX_IMAGE_BYTES: u64 = 25_000_000;
const RECIPES: usize = 5;
const DEADLINE: Duration = Duration::from_secs(180);
/// What `docker stop` waits before SIGKILL, and what the chart gives as grace period.
const GRACE: Duration = Duration::from_secs(30);

fn images() -> Option<Images> {
    match images_under_test() {
        Ok(images) => Some(images),
        Err(why) => {
            eprintln!("SKIPPED: container tests need the images: {why}");
            None
        }
    }
}

#[test]
fn images_are_small_labelled_non_root_and_have_no_shell() {
    let Some(images) = images() else { return };
    for service in Service::ALL {
        let image = images.of(service);
        let facts = inspect_image(&image).expect("inspect the image");
        assert!(
            facts.size <= MAX_IMAGE_BYTES,
            "{image} is {} bytes, over {MAX_IMAGE_BYTES}",
            facts.size
        );
        // Numeric, so that Kubernetes' runAsNonRoot can check it without reading /etc/passwd.
        assert_eq!(facts.user, "65532:65532", "{image} user");
        for label in [
            "title",
            "description",
            "version",
            "created",
            "licenses",
            "base.name",
        ] {
            let key = format!("org.opencontainers.image.{label}");
            let value = facts.labels.get(&key).and_then(|v| v.as_str());
            assert!(
                value.is_some_and(|v| !v.is_empty()),
                "{image} lacks label {key}: {:?}",
                facts.labels
            );
        }
        let revision = facts.labels["org.opencontainers.image.revision"]
            .as_str()
            .unwrap_or_default();
        assert!(
            revision.len() == 40 && revision.chars().all(|c| c.is_ascii_hexdigit()),
            "{image} revision label is the commit: {revision:?}"
        );
        let binary = format!("/usr/local/bin/{}", service.binary());
        assert_eq!(facts.entrypoint, [binary], "{image} entrypoint");
        let mut ports = vec![format!("{}/tcp", containers::admin_port(service))];
        if service == Service::Comparison {
            ports.push(format!("{}/tcp", containers::COMPARISON_GRPC_PORT));
        }
        for port in ports {
            assert!(
                facts.exposed_ports.contains(&port),
                "{image} exposes {port}: {:?}",
                facts.exposed_ports
            );
        }

        // The binary runs on the image's base as it is (statically linked, no libc there),
        // hardened as in the chart.
        let mut args = vec!["run", "--rm"];
        args.extend(containers::HARDENING);
        args.extend([image.as_str(), "--version"]);
        let version = docker(&args).unwrap_or_else(|e| panic!("{image} --version: {e:#}"));
        assert!(
            version.starts_with(service.binary()),
            "{image} --version printed {version:?}"
        );

        // Nothing but the service: no shell to exec into.
        let shell = docker_output(&[
            "run",
            "--rm",
            "--entrypoint",
            "/bin/sh",
            &image,
            "-c",
            "true",
        ])
        .expect("docker run");
        assert!(!shell.status.success(), "{image} has a shell: /bin/sh ran");
    }
}

/// Building an image again from the same binaries, without the builder's cache, gives the
/// same layers: the binaries' dates and modes are pinned and the base holds their folder.
#[test]
fn images_rebuild_to_the_same_layers() {
    let Some(images) = images() else { return };
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the workspace");
    let context = root.join("target/images/context");
    let dockerfile = root.join("docker/Dockerfile");
    for service in Service::ALL {
        let image = images.of(service);
        let facts = inspect_image(&image).expect("inspect the image");
        let base = facts.labels["org.opencontainers.image.base.name"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let again = format!("{image}-rebuilt");
        docker(&[
            "build",
            "--quiet",
            "--no-cache",
            "-f",
            &dockerfile.display().to_string(),
            "--target",
            service.binary(),
            "--build-arg",
            &format!("BASE_IMAGE={base}"),
            "-t",
            &again,
            &context.display().to_string(),
        ])
        .unwrap_or_else(|e| panic!("rebuild {image} from {}: {e:#}", context.display()));
        let rebuilt = inspect_image(&again).expect("inspect the rebuilt image");
        let _ = docker(&["image", "rm", &again]);
        assert_eq!(rebuilt.layers, facts.layers, "{image} rebuilt");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipeline_across_containers_loses_nothing_when_comparison_restarts() {
    let Some(images) = images() else { return };
    let mut p = Pipeline::in_containers(images, &[]).await;
    p.start_all().await;
    p.upload_recipes(&recipes("ct", RECIPES), DEADLINE).await;

    // A first wave; once it is under way the comparison container gets SIGTERM and must
    // exit cleanly, well inside the grace period.
    p.upload_all(&makes("ct", RECIPES, 0, 4)).await;
    p.wait_until("the first wave under way", DEADLINE, |m| {
        m.values().sum::<u64>() > 0
    })
    .await;
    let stopped_in = p.terminate(Service::Comparison);
    assert!(
        stopped_in < GRACE,
        "comparison took {stopped_in:?} to stop on SIGTERM"
    );

    // A second wave while it is down: the sender keeps those jobs until it is back.
    p.upload_all(&makes("ct", RECIPES, 4, 4)).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    p.start(Service::Comparison).await;

    let want: BTreeMap<String, u64> = (0..RECIPES).map(|r| (format!("ct-r{r:03}"), 8)).collect();
    p.wait_until("every make stored after the restart", DEADLINE, |m| {
        m == &want
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    p.assert_exactly(&want).await;

    // The admin ports answer through the published ports, and the sender recorded each make
    // once.
    p.wait_for_metric(
        Service::Sender,
        "recipe_mesh_sender_jobs_processed_total",
        &[("kind", "make"), ("outcome", "recorded")],
        (RECIPES * 8) as f64,
        Duration::from_secs(10),
    )
    .await;

    // The others stop cleanly on SIGTERM too.
    for service in [Service::Watcher, Service::Sender, Service::Comparison] {
        let took = p.terminate(service);
        assert!(took < GRACE, "{service:?} took {took:?} to stop on SIGTERM");
    }
}
