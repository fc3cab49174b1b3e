//! Files to upload: recipes, makes that differ from them in the ways cooks do (scaled,
//! substituted, steps edited, re-rated), and poison files that must end in the dead letters.

use serde_json::{Value, json};

/// One file to upload.
#[derive(Debug, Clone)]
pub struct Upload {
    pub key: String,
    pub bytes: Vec<u8>,
    /// The recipe a make belongs to; `None` for a recipe file.
    pub make_of: Option<String>,
}

fn recipe(id: &str) -> Value {
    json!({
        "recipeName": format!("Pancakes {id}"),
        "recipeId": id,
        "rating": 4,
        "ingredients": [
            {"ingredientId": "1", "quantity": 2, "measurement": "cup", "ingredientName": "flour"},
            {"ingredientId": "2", "quantity": 2, "measurement": "tbsp", "ingredientName": "sugar"},
            {"ingredientId": "3", "quantity": 2, "measurement": "cup", "ingredientName": "buttermilk"},
            {"ingredientId": "4", "quantity": 2, "measurement": "", "ingredientName": "eggs"},
            {"ingredientId": "5", "quantity": 50, "measurement": "g", "ingredientName": "butter"}
        ],
        "steps": [
            {"stepId": "1", "stepText": "Whisk the dry ingredients."},
            {"stepId": "2", "stepText": "Beat the buttermilk, eggs and melted butter."},
            {"stepId": "3", "stepText": "Fold wet into dry until just combined."},
            {"stepId": "4", "stepText": "Cook on a hot griddle until bubbles form, then flip."}
        ]
    })
}

/// Make number `n` of recipe `id`: a different change for different `n`.
fn make(id: &str, n: usize) -> Value {
    let mut m = recipe(id);
    match n % 4 {
        0 => {
            // The whole recipe scaled.
            let factor = [0.5, 2.0, 3.0][n % 3];
            for ing in m["ingredients"].as_array_mut().expect("ingredients") {
                let q = ing["quantity"].as_f64().expect("quantity");
                ing["quantity"] = json!(q * factor);
            }
        }
        1 => {
            m["ingredients"][4]["ingredientName"] = json!("margarine");
        }
        2 => {
            m["steps"][3]["stepText"] = json!("Cook on a medium griddle until golden, then flip.");
            m["ingredients"][1]["quantity"] = json!(3);
        }
        _ => {
            let steps = m["steps"].as_array_mut().expect("steps");
            steps.swap(0, 1);
            m["ingredients"].as_array_mut().expect("ingredients").push(
                json!({"ingredientId": "6", "quantity": 1, "measurement": "tsp",
                             "ingredientName": "vanilla extract"}),
            );
        }
    }
    m["rating"] = json!((n % 5) as f64 + 1.0);
    m
}

fn bytes(v: &Value) -> Vec<u8> {
    serde_json::to_vec_pretty(v).expect("JSON")
}

/// `recipes` recipe files with ids `tag-r000`, `tag-r001`, …
pub fn recipes(tag: &str, recipes: usize) -> Vec<Upload> {
    (0..recipes)
        .map(|r| {
            let id = format!("{tag}-r{r:03}");
            Upload {
                key: format!("recipes/{id}.json"),
                bytes: bytes(&recipe(&id)),
                make_of: None,
            }
        })
        .collect()
}

/// Makes `first..first+count` of every recipe `tag-r000..`, round-robin over the recipes.
pub fn makes(tag: &str, recipes: usize, first: usize, count: usize) -> Vec<Upload> {
    // `count` makes of each recipe, so `count * recipes` files.
    let mut out = Vec::new();
    for n in first..first + count {
        for r in 0..recipes {
            let id = format!("{tag}-r{r:03}");
            out.push(Upload {
                key: format!("makes/{id}/make-{n:04}.json"),
                bytes: bytes(&make(&id, n)),
                make_of: Some(id),
            });
        }
    }
    out
}

/// Files that can never be stored, each with a word its dead-letter reason must contain.
pub fn poison(tag: &str) -> Vec<(Upload, &'static str)> {
    let id = format!("{tag}-r000");
    let mut wrong_type = make(&id, 1);
    wrong_type["ingredients"][0]["quantity"] = json!("two");
    let mut negative = make(&id, 2);
    negative["ingredients"][0]["quantity"] = json!(-3);
    let mut orphan = make(&id, 3);
    orphan["recipeId"] = json!(format!("{tag}-no-such-recipe"));
    let mut huge = make(&id, 0);
    huge["recipeName"] = json!("x".repeat(2 * 1024 * 1024));
    let upload = |name: &str, bytes: Vec<u8>| Upload {
        key: format!("makes/{id}/poison-{name}.json"),
        bytes,
        make_of: None,
    };
    vec![
        (
            upload(
                "truncated",
                br#"{"recipeName": "Pancakes", "recipeId": "#.to_vec(),
            ),
            "EOF while parsing",
        ),
        (upload("wrong-type", bytes(&wrong_type)), "quantity"),
        (upload("negative", bytes(&negative)), "quantity"),
        (upload("orphan", bytes(&orphan)), "no-such-recipe"),
        (upload("huge", bytes(&huge)), "limit"),
    ]
}
