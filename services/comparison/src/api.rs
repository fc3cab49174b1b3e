//! The `recipe.v1.ComparisonService` handlers: validate the request, call the diff engine and the
//! store, map the answer back. Every request field is checked here, so the store and the diff
//! engine only ever see valid documents.

use crate::convert::{self, recipe_from_pb};
use crate::errors::{self, invalid_argument, under};
use crate::metrics::ComparisonMetrics;
use recipe_model::{FieldViolation, Recipe};
use recipe_proto::recipe::v1 as pb;
use recipe_store::{
    DiffBasis, MAX_IDEMPOTENCY_KEY_BYTES, NewMake, RecipeStore, RecordOutcome, StoreError,
    WriteOptions, make_id_for_key,
};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};
use tonic::{Request, Response, Status};
use tracing::Instrument;

/// Most ingredients/steps GetRecipeStats returns.
const MAX_STATS_TOP: u32 = 100;
const DEFAULT_STATS_TOP: u32 = 10;
/// Longest accepted `source` of a make.
const MAX_SOURCE_BYTES: usize = 1024;
/// Comparisons of one make when the recipe keeps changing under it, before answering ABORTED.
const STALE_RETRIES: u32 = 3;

pub struct ComparisonApi {
    store: Arc<dyn RecipeStore>,
    metrics: Arc<ComparisonMetrics>,
}

impl ComparisonApi {
    pub fn new(store: Arc<dyn RecipeStore>, metrics: Arc<ComparisonMetrics>) -> Self {
        Self { store, metrics }
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// The document in `field`, validated; violations are reported under that field's name.
fn document(field: &str, doc: Option<pb::Recipe>) -> Result<Recipe, Vec<FieldViolation>> {
    let Some(doc) = doc else {
        return Err(vec![FieldViolation::new(field, "required")]);
    };
    let recipe = recipe_from_pb(doc);
    recipe.validate().map_err(|v| under(field, v))?;
    Ok(recipe)
}

/// Checks an idempotency key; empty is allowed only when the key is optional.
fn check_key(field: &str, key: &str, required: bool, out: &mut Vec<FieldViolation>) {
    if key.is_empty() {
        if required {
            out.push(FieldViolation::new(
                field,
                "required: a stable id of this make across retries, e.g. s3://bucket/key#etag",
            ));
        }
    } else if key.len() > MAX_IDEMPOTENCY_KEY_BYTES {
        out.push(FieldViolation::new(
            field,
            format!("at most {MAX_IDEMPOTENCY_KEY_BYTES} bytes"),
        ));
    } else if key.chars().any(char::is_control) {
        out.push(FieldViolation::new(
            field,
            "must not contain control characters",
        ));
    }
}

fn required_id(field: &str, id: &str, out: &mut Vec<FieldViolation>) {
    if id.trim().is_empty() {
        out.push(FieldViolation::new(field, "required"));
    } else if id.len() > recipe_model::limits::MAX_ID_CHARS * 4 {
        out.push(FieldViolation::new(field, "too long"));
    }
}

/// Collects violations from several checks, then fails once with all of them.
fn finish<T>(
    value: Result<T, Vec<FieldViolation>>,
    mut more: Vec<FieldViolation>,
) -> Result<T, Status> {
    match value {
        Ok(v) if more.is_empty() => Ok(v),
        Ok(_) => Err(invalid_argument(more)),
        Err(mut v) => {
            v.append(&mut more);
            Err(invalid_argument(v))
        }
    }
}

/// Proto3 strings have no "unset": empty means absent.
fn non_empty(value: &str) -> Option<&str> {
    (!value.is_empty()).then_some(value)
}

/// The validated recipe of a create or update request and the store options for its write.
fn recipe_write(recipe: Option<pb::Recipe>, key: &str) -> Result<(Recipe, WriteOptions), Status> {
    let mut more = Vec::new();
    check_key("idempotencyKey", key, false, &mut more);
    let recipe = finish(document("recipe", recipe), more)?;
    let opts = WriteOptions {
        idempotency_key: non_empty(key).map(str::to_string),
        now_ms: now_ms(),
    };
    Ok((recipe, opts))
}

/// A span around one store operation; the backend's own calls (DynamoDB) nest inside it.
fn store_span(operation: &'static str) -> tracing::Span {
    tracing::info_span!(
        "store",
        otel.name = operation,
        otel.status_code = tracing::field::Empty
    )
}

/// Runs the diff off the async workers (a large recipe pair takes milliseconds of CPU) and
/// records how long it took.
async fn diff(
    metrics: &ComparisonMetrics,
    original: Recipe,
    made: Recipe,
) -> Result<(Recipe, recipe_diff::RecipeDiff), Status> {
    let histogram = metrics.diff_duration.clone();
    let span = tracing::info_span!(
        "diff",
        recipe_mesh.recipe_id = %original.recipe_id,
        recipe_mesh.diff.summary = tracing::field::Empty,
    );
    tokio::task::spawn_blocking(move || {
        let _entered = span.enter();
        let started = std::time::Instant::now();
        let diff = recipe_diff::diff(&original, &made);
        histogram.observe(started.elapsed().as_secs_f64());
        span.record("recipe_mesh.diff.summary", diff.summary.as_str());
        (made, diff)
    })
    .await
    .map_err(|e| {
        tracing::error!(error = %e, "diff task failed");
        Status::internal("diff failed; the server log has the details")
    })
}

#[tonic::async_trait]
impl pb::comparison_service_server::ComparisonService for ComparisonApi {
    async fn create_recipe(
        &self,
        request: Request<pb::CreateRecipeRequest>,
    ) -> Result<Response<pb::CreateRecipeResponse>, Status> {
        let req = request.into_inner();
        let (recipe, opts) = recipe_write(req.recipe, &req.idempotency_key)?;
        let id = recipe.recipe_id.clone();
        let write = self
            .store
            .create_recipe(recipe, opts)
            .await
            .map_err(|e| errors::from_store(e, "recipe", &id))?;
        tracing::info!(recipe_id = %id, version = write.stored.version, created = write.written, "create recipe");
        Ok(Response::new(pb::CreateRecipeResponse {
            recipe: Some(convert::recipe_version_to_pb(&write.stored)),
            created: write.written,
        }))
    }

    async fn get_recipe(
        &self,
        request: Request<pb::GetRecipeRequest>,
    ) -> Result<Response<pb::RecipeVersion>, Status> {
        let req = request.into_inner();
        let mut v = Vec::new();
        required_id("recipeId", &req.recipe_id, &mut v);
        finish(Ok(()), v)?;
        let version = (req.version != 0).then_some(req.version);
        let stored = self
            .store
            .get_recipe(&req.recipe_id, version)
            .await
            .map_err(|e| errors::from_store(e, "recipe", &req.recipe_id))?;
        Ok(Response::new(convert::recipe_version_to_pb(&stored)))
    }

    async fn update_recipe(
        &self,
        request: Request<pb::UpdateRecipeRequest>,
    ) -> Result<Response<pb::UpdateRecipeResponse>, Status> {
        let req = request.into_inner();
        let (recipe, opts) = recipe_write(req.recipe, &req.idempotency_key)?;
        let id = recipe.recipe_id.clone();
        telemetry::spans::record_subject(&id, "", opts.idempotency_key.as_deref().unwrap_or(""));
        let expected = (req.expected_version != 0).then_some(req.expected_version);
        let write = self
            .store
            .update_recipe(recipe, expected, req.allow_missing, opts)
            .await
            .map_err(|e| errors::from_store(e, "recipe", &id))?;
        tracing::info!(recipe_id = %id, version = write.stored.version, changed = write.written, "update recipe");
        Ok(Response::new(pb::UpdateRecipeResponse {
            recipe: Some(convert::recipe_version_to_pb(&write.stored)),
            changed: write.written,
        }))
    }

    async fn list_recipes(
        &self,
        request: Request<pb::ListRecipesRequest>,
    ) -> Result<Response<pb::ListRecipesResponse>, Status> {
        let req = request.into_inner();
        let page = self
            .store
            .list_recipes(
                recipe_store::effective_page_size(req.page_size),
                non_empty(&req.page_token),
            )
            .await
            .map_err(|e| errors::from_store(e, "recipes", ""))?;
        Ok(Response::new(pb::ListRecipesResponse {
            recipes: page.items.iter().map(convert::summary_to_pb).collect(),
            next_page_token: page.next_page_token.unwrap_or_default(),
        }))
    }

    async fn record_make(
        &self,
        request: Request<pb::RecordMakeRequest>,
    ) -> Result<Response<pb::RecordMakeResponse>, Status> {
        let req = request.into_inner();
        let mut more = Vec::new();
        check_key("idempotencyKey", &req.idempotency_key, true, &mut more);
        if req.source.len() > MAX_SOURCE_BYTES {
            more.push(FieldViolation::new(
                "source",
                format!("at most {MAX_SOURCE_BYTES} bytes"),
            ));
        }
        let make = finish(document("make", req.make), more)?;
        let recipe_id = make.recipe_id.clone();
        let make_id = make_id_for_key(&req.idempotency_key);
        telemetry::spans::record_subject(&recipe_id, &make_id, &req.source);
        let version = (req.recipe_version != 0).then_some(req.recipe_version);
        let basis = match version {
            Some(_) => DiffBasis::Named,
            None => DiffBasis::Latest,
        };
        // The original may come from the store's cache; the write checks that it was still the
        // latest, and a recipe updated in between means comparing again with the new version.
        let mut tries = 0;
        let outcome = loop {
            tries += 1;
            let original = self
                .store
                .recipe_for_make(&recipe_id, version)
                .instrument(store_span("store.recipe_for_make"))
                .await
                .map_err(|e| errors::from_store(e, "recipe", &recipe_id))?;
            let (compared, diff) = diff(&self.metrics, original.recipe, make.clone()).await?;
            let new = NewMake {
                make_id: make_id.clone(),
                idempotency_key: req.idempotency_key.clone(),
                recipe_id: recipe_id.clone(),
                recipe_version: original.version,
                make: compared,
                diff,
                recorded_at_ms: now_ms(),
                source: req.source.clone(),
            };
            match self
                .store
                .record_make_on(new, basis)
                .instrument(store_span("store.record_make"))
                .await
            {
                Err(StoreError::Stale(why)) if tries < STALE_RETRIES => {
                    tracing::debug!(%recipe_id, %make_id, %why, "recipe moved on; comparing again");
                }
                other => break other.map_err(|e| errors::from_store(e, "make", &make_id))?,
            }
        };
        self.metrics.make_recorded(&outcome);
        let duplicate = matches!(outcome, RecordOutcome::Duplicate(_));
        tracing::info!(%recipe_id, %make_id, duplicate, "record make");
        Ok(Response::new(pb::RecordMakeResponse {
            make: Some(convert::make_to_pb(outcome.make())),
            duplicate,
        }))
    }

    async fn get_make(
        &self,
        request: Request<pb::GetMakeRequest>,
    ) -> Result<Response<pb::Make>, Status> {
        let req = request.into_inner();
        let mut v = Vec::new();
        required_id("makeId", &req.make_id, &mut v);
        finish(Ok(()), v)?;
        let make = self
            .store
            .get_make(&req.make_id)
            .await
            .map_err(|e| errors::from_store(e, "make", &req.make_id))?;
        Ok(Response::new(convert::make_to_pb(&make)))
    }

    async fn list_makes(
        &self,
        request: Request<pb::ListMakesRequest>,
    ) -> Result<Response<pb::ListMakesResponse>, Status> {
        let req = request.into_inner();
        let mut v = Vec::new();
        required_id("recipeId", &req.recipe_id, &mut v);
        finish(Ok(()), v)?;
        let page = self
            .store
            .list_makes(
                &req.recipe_id,
                recipe_store::effective_page_size(req.page_size),
                non_empty(&req.page_token),
            )
            .await
            .map_err(|e| errors::from_store(e, "recipe", &req.recipe_id))?;
        Ok(Response::new(pb::ListMakesResponse {
            makes: page.items.iter().map(convert::make_to_pb).collect(),
            next_page_token: page.next_page_token.unwrap_or_default(),
        }))
    }

    async fn compare_recipes(
        &self,
        request: Request<pb::CompareRecipesRequest>,
    ) -> Result<Response<pb::CompareRecipesResponse>, Status> {
        let req = request.into_inner();
        let original = document("original", req.original);
        let made = document("made", req.made);
        let (original, made) = match (original, made) {
            (Ok(o), Ok(m)) => (o, m),
            (o, m) => {
                let mut v = o.err().unwrap_or_default();
                v.extend(m.err().unwrap_or_default());
                return Err(invalid_argument(v));
            }
        };
        let (_, diff) = diff(&self.metrics, original, made).await?;
        Ok(Response::new(pb::CompareRecipesResponse {
            diff: Some(convert::diff_to_pb(&diff)),
        }))
    }

    async fn get_recipe_stats(
        &self,
        request: Request<pb::GetRecipeStatsRequest>,
    ) -> Result<Response<pb::RecipeStats>, Status> {
        let req = request.into_inner();
        let mut v = Vec::new();
        required_id("recipeId", &req.recipe_id, &mut v);
        if req.top > MAX_STATS_TOP {
            v.push(FieldViolation::new(
                "top",
                format!("at most {MAX_STATS_TOP}"),
            ));
        }
        finish(Ok(()), v)?;
        let stats = self
            .store
            .get_stats(&req.recipe_id)
            .await
            .map_err(|e| errors::from_store(e, "recipe", &req.recipe_id))?;
        let top = if req.top == 0 {
            DEFAULT_STATS_TOP
        } else {
            req.top
        };
        Ok(Response::new(convert::stats_to_pb(
            &req.recipe_id,
            &stats,
            top as usize,
        )))
    }
}
