//! Starts a real comparison server in-process on 127.0.0.1:0 for a test, with its own store,
//! and hands back its address, its admin port's address and a connected tonic client.
#![allow(dead_code)] // each test binary uses a different part of this helper

use comparison::config::ServeSettings;
use comparison::startup::Application;
use recipe_proto::recipe::v1 as pb;
use recipe_proto::recipe::v1::comparison_service_client::ComparisonServiceClient;
use std::net::SocketAddr;
use tokio::sync::oneshot;
use tonic::transport::Channel;

pub struct TestApp {
    pub addr: SocketAddr,
    /// The admin port: /metrics, /livez, /readyz.
    pub admin: SocketAddr,
    pub client: ComparisonServiceClient<Channel>,
    stop: Option<oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
    _dir: Option<tempfile::TempDir>,
}

impl TestApp {
    /// The admin port's /metrics page.
    pub async fn metrics(&self) -> String {
        let got = admin_http::scrape::get(self.admin, "/metrics")
            .await
            .expect("GET /metrics");
        assert_eq!(got.status, 200, "{}", got.body);
        got.body
    }

    /// Stops the server gracefully and returns how it ended.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        match self.server.take() {
            Some(server) => server.await?,
            None => Ok(()),
        }
    }
}

/// A server on a fresh embedded SQLite store.
pub async fn spawn_app() -> TestApp {
    let dir = tempfile::tempdir().expect("temp dir");
    let url = format!("sqlite://{}", dir.path().join("store.db").display());
    let mut app = spawn_app_with_settings(settings(&url)).await;
    app._dir = Some(dir);
    app
}

/// Default settings on an ephemeral loopback port and the given store.
pub fn settings(store_url: &str) -> ServeSettings {
    ServeSettings::new("127.0.0.1:0".parse().expect("loopback address"), store_url)
}

pub async fn spawn_app_with_settings(settings: ServeSettings) -> TestApp {
    let app = Application::build(settings)
        .await
        .expect("comparison service starts");
    let addr = app.local_addr().expect("bound address");
    let admin = app.admin_addr().expect("bound admin address");
    let (stop, stopped) = oneshot::channel::<()>();
    let server = tokio::spawn(app.run_until(async {
        let _ = stopped.await;
    }));
    let client = ComparisonServiceClient::connect(format!("http://{addr}"))
        .await
        .expect("client connects");
    TestApp {
        addr,
        admin,
        client,
        stop: Some(stop),
        server: Some(server),
        _dir: None,
    }
}

/// The example recipe shipped in examples/, as a wire message.
pub fn pancakes() -> pb::Recipe {
    example("recipes/pancakes.json")
}

/// The example make of it (a double batch with a substitution, a moved and an inserted step).
pub fn double_batch() -> pb::Recipe {
    example("makes/pancakes-double-batch.json")
}

pub fn example(path: &str) -> pb::Recipe {
    let full = format!("{}/../../examples/{path}", env!("CARGO_MANIFEST_DIR"));
    let bytes = std::fs::read(&full).expect("example file");
    let r = recipe_model::parse_json(&bytes).expect("example is valid");
    comparison::convert::recipe_to_pb(&r)
}

/// A small valid recipe with the given id.
pub fn recipe(id: &str) -> pb::Recipe {
    pb::Recipe {
        recipe_id: id.into(),
        recipe_name: format!("Recipe {id}"),
        rating: Some(3.0),
        ingredients: vec![
            ingredient("1", 200.0, "g", "flour"),
            ingredient("2", 1.0, "cup", "milk"),
        ],
        steps: vec![
            pb::Step {
                step_id: "1".into(),
                step_text: "Mix the flour and milk.".into(),
            },
            pb::Step {
                step_id: "2".into(),
                step_text: "Bake at 180C for 20 minutes.".into(),
            },
        ],
    }
}

pub fn ingredient(id: &str, quantity: f64, unit: &str, name: &str) -> pb::Ingredient {
    pb::Ingredient {
        ingredient_id: id.into(),
        quantity,
        measurement: unit.into(),
        ingredient_name: name.into(),
    }
}
