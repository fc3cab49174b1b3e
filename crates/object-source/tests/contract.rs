//! The object source contract, written once and run against both backends.
//!
//! Every shared test is an `async fn(&Backend)`; the `contract!` macro instantiates each one in
//! `local::` (a temporary folder) and `s3::` (a fresh, uniquely named bucket on the emulator
//! `AWS_ENDPOINT_URL` points at). Without `AWS_ENDPOINT_URL` the S3 tests fail on purpose: run
//! `scripts/test.sh`, which starts moto through `scripts/lib/moto_server.py`. Tests that only
//! make sense for one backend (key rules, partial files and links of a local folder; opening an
//! `s3://` URL) follow the shared ones.

use aws_config::SdkConfig;
use aws_sdk_s3::config::{Credentials, SharedCredentialsProvider};
use futures::StreamExt;
use object_source::local::LocalFolder;
use object_source::s3::S3Source;
use object_source::{ListPage, MAX_PAGE_SIZE, ObjectError, ObjectMeta, ObjectSource};
use std::path::PathBuf;
use std::sync::Arc;

// ---------------------------------------------------------------------------------------------
// Backends

#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind {
    Local,
    S3,
}

struct Backend {
    kind: Kind,
    source: Arc<dyn ObjectSource>,
    /// A source on a bucket (folder) that does not exist.
    missing: Arc<dyn ObjectSource>,
    /// The local folder, for tests that look at the files.
    root: Option<PathBuf>,
    _dir: Option<tempfile::TempDir>,
    /// The S3 client and bucket to empty and drop after a passing test.
    s3: Option<(aws_sdk_s3::Client, String)>,
}

impl Backend {
    async fn create_bucket_again(&self) -> object_source::Result<()> {
        match (&self.root, &self.s3) {
            (Some(root), _) => LocalFolder::new(root.clone())?.create().await,
            (_, Some((client, bucket))) => {
                S3Source::with_client(client.clone(), bucket)?
                    .create_bucket()
                    .await
            }
            _ => unreachable!("every backend is local or S3"),
        }
    }

    async fn finish(self) {
        if let Some((client, bucket)) = self.s3 {
            // Best effort: the emulator is thrown away after the run anyway.
            let source = S3Source::with_client(client.clone(), &bucket).expect("bucket name");
            let mut continuation = None;
            loop {
                let Ok(page) = source.list("", continuation.as_deref(), 1000).await else {
                    break;
                };
                if !page.objects.is_empty() {
                    let ids = page
                        .objects
                        .iter()
                        .map(|o| {
                            aws_sdk_s3::types::ObjectIdentifier::builder()
                                .key(&o.key)
                                .build()
                                .expect("key is set")
                        })
                        .collect();
                    let delete = aws_sdk_s3::types::Delete::builder()
                        .set_objects(Some(ids))
                        .build()
                        .expect("objects are set");
                    let _ = client
                        .delete_objects()
                        .bucket(&bucket)
                        .delete(delete)
                        .send()
                        .await;
                }
                match page.next {
                    Some(next) => continuation = Some(next),
                    None => break,
                }
            }
            let _ = client.delete_bucket().bucket(&bucket).send().await;
        }
    }
}

async fn local_backend() -> Backend {
    let dir = tempfile::tempdir().expect("temporary directory");
    let root = dir.path().join("bucket");
    let source = LocalFolder::new(root.clone()).expect("folder source");
    source.create().await.expect("create folder");
    let missing = LocalFolder::new(dir.path().join("missing")).expect("folder source");
    Backend {
        kind: Kind::Local,
        source: Arc::new(source),
        missing: Arc::new(missing),
        root: Some(root),
        _dir: Some(dir),
        s3: None,
    }
}

/// The SDK configuration for the emulator; fails the test when there is none.
async fn emulator_config() -> SdkConfig {
    if std::env::var_os("AWS_ENDPOINT_URL").is_none_or(|v| v.is_empty()) {
        panic!(
            "AWS_ENDPOINT_URL is not set, so the S3 contract tests have nothing to run against. \
             Run scripts/test.sh (it starts moto), or start \
             `python scripts/lib/moto_server.py -H 127.0.0.1 -p 5077 &` and set \
             AWS_ENDPOINT_URL=http://127.0.0.1:5077"
        );
    }
    let config = aws_setup::load().await;
    if std::env::var_os("AWS_ACCESS_KEY_ID").is_some() {
        config
    } else {
        // The emulator accepts any credentials; do not let the chain go looking for real ones.
        config
            .to_builder()
            .credentials_provider(SharedCredentialsProvider::new(Credentials::new(
                "testing",
                "testing",
                None,
                None,
                "contract-tests",
            )))
            .build()
    }
}

fn unique_bucket() -> String {
    format!("contract-{}", uuid::Uuid::new_v4().simple())
}

async fn s3_backend() -> Backend {
    let config = emulator_config().await;
    let bucket = unique_bucket();
    let source = S3Source::new(&config, &bucket, true).expect("valid bucket name");
    source.create_bucket().await.expect("create bucket");
    let missing = S3Source::new(&config, &unique_bucket(), true).expect("valid bucket name");
    let client = source.client().clone();
    Backend {
        kind: Kind::S3,
        source: Arc::new(source),
        missing: Arc::new(missing),
        root: None,
        _dir: None,
        s3: Some((client, bucket)),
    }
}

macro_rules! contract {
    ($($name:ident),* $(,)?) => {
        mod local {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    let backend = super::local_backend().await;
                    super::$name(&backend).await;
                    backend.finish().await;
                }
            )*
        }
        mod s3 {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    let backend = super::s3_backend().await;
                    super::$name(&backend).await;
                    backend.finish().await;
                }
            )*
        }
    };
}

contract!(
    put_get_head_and_list_agree,
    etag_changes_with_content_and_only_then,
    list_is_in_key_order_with_prefixes_and_pages,
    list_pages_hold_at_most_a_thousand,
    missing_objects_are_not_found,
    objects_over_the_limit_are_refused,
    empty_keys_are_invalid,
    missing_bucket_is_not_ready,
    create_bucket_is_idempotent,
);

// ---------------------------------------------------------------------------------------------
// Helpers

/// Every object under `prefix`, page by page; also returns the page lengths.
async fn list_all(
    source: &dyn ObjectSource,
    prefix: &str,
    page_size: u32,
) -> (Vec<ObjectMeta>, Vec<usize>) {
    let mut objects = Vec::new();
    let mut pages = Vec::new();
    let mut continuation: Option<String> = None;
    loop {
        let ListPage {
            objects: page,
            next,
        } = source
            .list(prefix, continuation.as_deref(), page_size)
            .await
            .expect("list");
        pages.push(page.len());
        objects.extend(page);
        assert!(pages.len() < 10_000, "listing does not end");
        match next {
            Some(next) => continuation = Some(next),
            None => return (objects, pages),
        }
    }
}

fn keys(objects: &[ObjectMeta]) -> Vec<&str> {
    objects.iter().map(|o| o.key.as_str()).collect()
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_millis() as i64
}

async fn put_many(source: &dyn ObjectSource, keys: impl IntoIterator<Item = String>) {
    futures::stream::iter(keys)
        .map(|key| async move {
            let body = format!("{{\"key\": {key:?}}}").into_bytes();
            source.put(&key, body).await.expect("put");
        })
        .buffer_unordered(16)
        .collect::<Vec<()>>()
        .await;
}

const MIB: u64 = 1024 * 1024;

// ---------------------------------------------------------------------------------------------
// The contract

async fn put_get_head_and_list_agree(b: &Backend) {
    let body = br#"{"recipe_id": "101", "recipe_name": "Pancakes"}"#.to_vec();
    let key = "makes/2026/05/pancakes.json";
    let put = b.source.put(key, body.clone()).await.expect("put");
    assert_eq!(put.key, key);
    assert_eq!(put.size, body.len() as u64);
    assert!(!put.etag.is_empty());
    assert!(!put.etag.contains('"'), "etag {:?} has quotes", put.etag);
    assert!(
        (put.last_modified_ms - now_ms()).abs() < 10 * 60 * 1000,
        "last_modified_ms {} is not about now",
        put.last_modified_ms
    );

    let got = b.source.get(key, MIB).await.expect("get");
    assert_eq!(got.bytes, body);
    assert_eq!(got.meta.key, key);
    assert_eq!(got.meta.etag, put.etag);
    assert_eq!(got.meta.size, put.size);

    let head = b.source.head(key).await.expect("head");
    assert_eq!(head.etag, put.etag);
    assert_eq!(head.size, put.size);
    assert_eq!(head.last_modified_ms, got.meta.last_modified_ms);

    let page = b.source.list("", None, 10).await.expect("list");
    assert_eq!(page.next, None);
    assert_eq!(keys(&page.objects), [key]);
    assert_eq!(page.objects[0].etag, put.etag);
    assert_eq!(page.objects[0].size, put.size);
    assert_eq!(page.objects[0].last_modified_ms, head.last_modified_ms);
    if b.kind == Kind::Local {
        assert_eq!(put, head);
        assert_eq!(put.version_id, None);
    }
}

async fn etag_changes_with_content_and_only_then(b: &Backend) {
    let key = "recipes/101.json";
    let v1 = b
        .source
        .put(key, b"version 1".to_vec())
        .await
        .expect("put v1");
    // Untouched: the same token from every call, every time.
    assert_eq!(b.source.head(key).await.expect("head").etag, v1.etag);
    assert_eq!(b.source.head(key).await.expect("head").etag, v1.etag);
    assert_eq!(
        b.source.get(key, 100).await.expect("get").meta.etag,
        v1.etag
    );
    let listed = b.source.list("recipes/", None, 10).await.expect("list");
    assert_eq!(listed.objects[0].etag, v1.etag);

    // Same size, other content, written right away.
    let v2 = b
        .source
        .put(key, b"version 2".to_vec())
        .await
        .expect("put v2");
    assert_ne!(v2.etag, v1.etag, "same-size rewrite kept the etag");
    let got = b.source.get(key, 100).await.expect("get v2");
    assert_eq!(got.bytes, b"version 2");
    assert_eq!(got.meta.etag, v2.etag);
    assert_eq!(b.source.head(key).await.expect("head").etag, v2.etag);
    let listed = b.source.list("recipes/", None, 10).await.expect("list");
    assert_eq!(listed.objects[0].etag, v2.etag);

    // Other size, and back to the first content: never an etag seen before for other content.
    let v3 = b
        .source
        .put(key, b"version three".to_vec())
        .await
        .expect("put v3");
    assert_ne!(v3.etag, v2.etag);
    assert_ne!(v3.etag, v1.etag);
    let v4 = b
        .source
        .put(key, b"version 1".to_vec())
        .await
        .expect("put v4");
    assert_ne!(v4.etag, v3.etag);
    assert_ne!(v4.etag, v2.etag);
    assert_eq!(b.source.head(key).await.expect("head").etag, v4.etag);
}

/// Keys whose byte order differs from a naive walk of folders: "a-c" < "a/b" < "a0".
const ORDER_KEYS: [&str; 11] = [
    "a-c.json",
    "a/b.json",
    "a0.json",
    "makes-archive.json",
    "makes/2025/12/x.json",
    "makes/2026/01/a.json",
    "makes/2026/01/b.json",
    "makes/2026/02/a.json",
    "makes/2026/index.json",
    "makes0.json",
    "recipes/101.json",
];

async fn list_is_in_key_order_with_prefixes_and_pages(b: &Backend) {
    // Written out of order.
    let mut shuffled = ORDER_KEYS.to_vec();
    shuffled.reverse();
    shuffled.swap(2, 7);
    for key in &shuffled {
        b.source
            .put(key, key.as_bytes().to_vec())
            .await
            .expect("put");
    }
    let mut expected: Vec<&str> = ORDER_KEYS.to_vec();
    expected.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
    assert_eq!(expected, ORDER_KEYS, "the fixture is in byte order");

    let (all, pages) = list_all(b.source.as_ref(), "", 3).await;
    assert_eq!(keys(&all), expected, "every key once, in byte order");
    assert_eq!(pages, [3, 3, 3, 2]);
    for object in &all {
        assert_eq!(object.size, object.key.len() as u64);
    }

    for (prefix, page_size) in [
        ("makes/", 3),
        ("makes/2026/", 2),
        ("makes/2026/0", 1),
        ("makes", 3),
        ("a", 2),
        ("a/", 3),
    ] {
        let (listed, _) = list_all(b.source.as_ref(), prefix, page_size).await;
        let want: Vec<&str> = expected
            .iter()
            .copied()
            .filter(|k| k.starts_with(prefix))
            .collect();
        assert_eq!(
            keys(&listed),
            want,
            "prefix {prefix:?}, page size {page_size}"
        );
    }

    let empty = b.source.list("nothing/", None, 3).await.expect("list");
    assert_eq!(
        empty,
        ListPage {
            objects: vec![],
            next: None
        }
    );
    // A page that ends exactly at the last key says there is no next page.
    let (_, pages) = list_all(b.source.as_ref(), "makes/2026/", 4).await;
    assert_eq!(pages, [4]);
}

async fn list_pages_hold_at_most_a_thousand(b: &Backend) {
    let keys_written: Vec<String> = (0..=1000).map(|i| format!("bulk/{i:04}.json")).collect();
    put_many(b.source.as_ref(), keys_written.clone()).await;

    let first = b.source.list("bulk/", None, 1000).await.expect("page 1");
    assert_eq!(first.objects.len(), 1000);
    let next = first.next.as_deref().expect("a second page");
    let second = b
        .source
        .list("bulk/", Some(next), 1000)
        .await
        .expect("page 2");
    assert_eq!(keys(&second.objects), ["bulk/1000.json"]);
    assert_eq!(second.next, None);
    let mut listed: Vec<String> = first.objects.into_iter().map(|o| o.key).collect();
    listed.push("bulk/1000.json".into());
    assert_eq!(listed, keys_written);

    // Exactly a full page: no next page.
    let exact = b.source.list("bulk/0", None, 1000).await.expect("list");
    assert_eq!(exact.objects.len(), 1000);
    assert_eq!(exact.next, None);

    // 0 means the maximum; larger sizes are clamped to it.
    for page_size in [0, 5000] {
        let page = b.source.list("", None, page_size).await.expect("list");
        assert_eq!(page.objects.len(), MAX_PAGE_SIZE as usize);
        assert!(page.next.is_some());
    }
}

async fn missing_objects_are_not_found(b: &Backend) {
    b.source
        .put("makes/2026/x.json", b"{}".to_vec())
        .await
        .expect("put");
    for key in [
        "nothing.json",
        "makes/2026/y.json",
        "makes",
        "makes/2026",
        "makes/2026/x.json/z",
    ] {
        let err = b
            .source
            .get(key, MIB)
            .await
            .expect_err("get of a missing key");
        assert!(
            matches!(err, ObjectError::NotFound(_)),
            "get {key:?}: {err:?}"
        );
        let err = b.source.head(key).await.expect_err("head of a missing key");
        assert!(
            matches!(err, ObjectError::NotFound(_)),
            "head {key:?}: {err:?}"
        );
    }
}

async fn objects_over_the_limit_are_refused(b: &Backend) {
    let big = vec![b'x'; 2 * MIB as usize];
    b.source.put("big.json", big).await.expect("put 2 MiB");
    let err = b
        .source
        .get("big.json", 1024)
        .await
        .expect_err("2 MiB over 1 KiB");
    assert!(
        matches!(err, ObjectError::TooLarge { size, limit: 1024 } if size == 2 * MIB),
        "{err:?}"
    );

    b.source
        .put("edge.json", vec![b'y'; 1000])
        .await
        .expect("put");
    let exact = b
        .source
        .get("edge.json", 1000)
        .await
        .expect("exactly at the limit");
    assert_eq!(exact.bytes.len(), 1000);
    let err = b
        .source
        .get("edge.json", 999)
        .await
        .expect_err("one byte over");
    assert!(
        matches!(
            err,
            ObjectError::TooLarge {
                size: 1000,
                limit: 999
            }
        ),
        "{err:?}"
    );

    b.source
        .put("empty.json", Vec::new())
        .await
        .expect("put empty");
    let empty = b
        .source
        .get("empty.json", 0)
        .await
        .expect("empty object, zero limit");
    assert!(empty.bytes.is_empty());
    assert_eq!(empty.meta.size, 0);
}

async fn empty_keys_are_invalid(b: &Backend) {
    let err = b.source.get("", MIB).await.expect_err("get");
    assert!(matches!(err, ObjectError::InvalidKey(_)), "{err:?}");
    let err = b.source.head("").await.expect_err("head");
    assert!(matches!(err, ObjectError::InvalidKey(_)), "{err:?}");
    let err = b.source.put("", b"{}".to_vec()).await.expect_err("put");
    assert!(matches!(err, ObjectError::InvalidKey(_)), "{err:?}");
    let long = "k".repeat(object_source::MAX_KEY_BYTES + 1);
    let err = b.source.put(&long, b"{}".to_vec()).await.expect_err("put");
    assert!(matches!(err, ObjectError::InvalidKey(_)), "{err:?}");
}

async fn missing_bucket_is_not_ready(b: &Backend) {
    let err = b.missing.list("", None, 10).await.expect_err("list");
    let ObjectError::NotReady(message) = &err else {
        panic!("list of a missing bucket: {err:?}");
    };
    assert!(message.contains("create"), "{message}");
    let err = b.missing.get("a.json", MIB).await.expect_err("get");
    assert!(matches!(err, ObjectError::NotReady(_)), "get: {err:?}");
    let err = b
        .missing
        .put("a.json", b"{}".to_vec())
        .await
        .expect_err("put");
    assert!(matches!(err, ObjectError::NotReady(_)), "put: {err:?}");
}

async fn create_bucket_is_idempotent(b: &Backend) {
    b.source.put("a.json", b"{}".to_vec()).await.expect("put");
    b.create_bucket_again()
        .await
        .expect("create an existing bucket");
    let page = b.source.list("", None, 10).await.expect("list");
    assert_eq!(
        keys(&page.objects),
        ["a.json"],
        "creating again keeps the objects"
    );
}

// ---------------------------------------------------------------------------------------------
// Local folders only

mod local_only {
    use super::*;
    use object_source::Location;

    fn root(b: &Backend) -> &std::path::Path {
        b.root.as_deref().expect("a local backend")
    }

    #[tokio::test]
    async fn invalid_keys_are_rejected() {
        let b = local_backend().await;
        for key in [
            "/etc/passwd",
            "../escape.json",
            "a/../../escape.json",
            "a/./b.json",
            "a//b.json",
            "a/",
            "a\\b.json",
            "a\0b.json",
            ".hidden.json",
            "a/.git/config",
            "upload.json.part",
            "upload.tmp",
        ] {
            let err = b.source.put(key, b"{}".to_vec()).await.expect_err("put");
            assert!(
                matches!(err, ObjectError::InvalidKey(_)),
                "put {key:?}: {err:?}"
            );
            let err = b.source.get(key, MIB).await.expect_err("get");
            assert!(
                matches!(err, ObjectError::InvalidKey(_)),
                "get {key:?}: {err:?}"
            );
            let err = b.source.head(key).await.expect_err("head");
            assert!(
                matches!(err, ObjectError::InvalidKey(_)),
                "head {key:?}: {err:?}"
            );
        }
        let parent = root(&b).parent().expect("the root has a parent");
        assert!(!parent.join("escape.json").exists());
        let page = b.source.list("", None, 10).await.expect("list");
        assert!(page.objects.is_empty(), "{page:?}");

        // A file and a folder cannot share a name.
        b.source.put("a.json", b"{}".to_vec()).await.expect("put");
        let err = b
            .source
            .put("a.json/b.json", b"{}".to_vec())
            .await
            .expect_err("under a file");
        assert!(matches!(err, ObjectError::InvalidKey(_)), "{err:?}");
        b.source.put("d/e.json", b"{}".to_vec()).await.expect("put");
        let err = b
            .source
            .put("d", b"{}".to_vec())
            .await
            .expect_err("over a folder");
        assert!(matches!(err, ObjectError::InvalidKey(_)), "{err:?}");
    }

    #[tokio::test]
    async fn partial_and_hidden_files_are_not_listed() {
        let b = local_backend().await;
        let root = root(&b);
        std::fs::create_dir_all(root.join(".staging")).unwrap();
        std::fs::create_dir_all(root.join("upload.tmp")).unwrap();
        std::fs::write(root.join(".staging/a.json"), b"{}").unwrap();
        std::fs::write(root.join("upload.tmp/b.json"), b"{}").unwrap();
        std::fs::write(root.join(".hidden.json"), b"{}").unwrap();
        std::fs::write(root.join("c.json.tmp"), b"{}").unwrap();
        std::fs::write(root.join("d.json.part"), b"{}").unwrap();
        std::fs::create_dir_all(root.join("empty/folders/only")).unwrap();
        let page = b.source.list("", None, 10).await.expect("list");
        assert_eq!(
            page,
            ListPage {
                objects: vec![],
                next: None
            }
        );

        // A writer's write-then-rename publishes the object whole.
        std::fs::rename(root.join("c.json.tmp"), root.join("c.json")).unwrap();
        let page = b.source.list("", None, 10).await.expect("list");
        assert_eq!(keys(&page.objects), ["c.json"]);
        let head = b.source.head("c.json").await.expect("head");
        assert_eq!(page.objects[0], head);

        // Our own puts leave no partial files behind.
        b.source.put("e/f.json", b"{}".to_vec()).await.expect("put");
        let names: Vec<_> = std::fs::read_dir(root.join("e"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["f.json"]);
    }

    #[cfg(unix)]
    #[tokio::test]
    async fn symbolic_links_are_not_followed() {
        let b = local_backend().await;
        let root = root(&b);
        let outside = root.parent().unwrap().join("outside");
        std::fs::create_dir_all(&outside).unwrap();
        std::fs::write(outside.join("secret.json"), b"secret").unwrap();
        std::os::unix::fs::symlink(&outside, root.join("link")).unwrap();
        std::os::unix::fs::symlink(outside.join("secret.json"), root.join("file.json")).unwrap();
        std::fs::create_dir_all(root.join("real")).unwrap();
        std::os::unix::fs::symlink(root.join("real"), root.join("inner")).unwrap();
        std::fs::write(root.join("real/ok.json"), b"ok").unwrap();

        let (listed, _) = list_all(b.source.as_ref(), "", 10).await;
        assert_eq!(keys(&listed), ["real/ok.json"]);
        for key in ["link/secret.json", "file.json", "inner/ok.json"] {
            let err = b
                .source
                .get(key, MIB)
                .await
                .expect_err("get through a link");
            assert!(
                matches!(err, ObjectError::InvalidKey(_)),
                "get {key:?}: {err:?}"
            );
            let err = b.source.head(key).await.expect_err("head through a link");
            assert!(
                matches!(err, ObjectError::InvalidKey(_)),
                "head {key:?}: {err:?}"
            );
        }
        for key in ["link/new.json", "file.json", "link/deeper/new.json"] {
            let err = b
                .source
                .put(key, b"x".to_vec())
                .await
                .expect_err("put through a link");
            assert!(
                matches!(err, ObjectError::InvalidKey(_)),
                "put {key:?}: {err:?}"
            );
        }
        assert_eq!(
            std::fs::read(outside.join("secret.json")).unwrap(),
            b"secret"
        );
        let outside_names: Vec<_> = std::fs::read_dir(&outside)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(outside_names, ["secret.json"]);
    }

    #[tokio::test]
    async fn files_written_by_others_are_objects() {
        let b = local_backend().await;
        let root = root(&b);
        std::fs::create_dir_all(root.join("makes")).unwrap();
        std::fs::write(root.join("makes/x.json"), b"1234").unwrap();
        let listed = b.source.list("makes/", None, 10).await.expect("list");
        let head = b.source.head("makes/x.json").await.expect("head");
        let got = b.source.get("makes/x.json", 100).await.expect("get");
        assert_eq!(listed.objects.len(), 1);
        assert_eq!(listed.objects[0], head);
        assert_eq!(got.meta, head);
        assert_eq!(got.bytes, b"1234");
        // Replaced by another writer with other content of another size.
        std::fs::write(root.join("makes/.x.json.part"), b"123456").unwrap();
        std::fs::rename(root.join("makes/.x.json.part"), root.join("makes/x.json")).unwrap();
        assert_ne!(
            b.source.head("makes/x.json").await.expect("head").etag,
            head.etag
        );
    }

    /// Folders that hold nothing listable do not end a page early or hide what follows them.
    #[tokio::test]
    async fn empty_folders_are_passed_over() {
        let b = local_backend().await;
        let root = root(&b);
        for i in 0..7 {
            std::fs::create_dir_all(root.join(format!("k{i}/empty"))).unwrap();
            std::fs::write(root.join(format!("k{i}/.partial.json")), b"{}").unwrap();
        }
        b.source.put("k3.json", b"{}".to_vec()).await.expect("put");
        b.source
            .put("k6/x/y.json", b"{}".to_vec())
            .await
            .expect("put");
        b.source.put("k9.json", b"{}".to_vec()).await.expect("put");
        for page_size in [1, 2, 3] {
            let (listed, pages) = list_all(b.source.as_ref(), "", page_size).await;
            assert_eq!(keys(&listed), ["k3.json", "k6/x/y.json", "k9.json"]);
            let (last, full) = pages.split_last().expect("a page");
            assert!(full.iter().all(|&n| n == page_size as usize), "{pages:?}");
            assert!(*last <= page_size as usize, "{pages:?}");
        }
    }

    /// The etag is (mtime, size), so a put must never give a file an mtime that is not later
    /// than the one of the file it replaces, whatever the clock or the file system's timestamp
    /// granularity: here the old file's mtime lies an hour ahead.
    #[tokio::test]
    async fn put_moves_the_mtime_past_the_replaced_file() {
        let b = local_backend().await;
        let v1 = b.source.put("a.json", b"v1".to_vec()).await.expect("put");
        let ahead = std::time::SystemTime::now() + std::time::Duration::from_secs(3600);
        std::fs::File::options()
            .write(true)
            .open(root(&b).join("a.json"))
            .unwrap()
            .set_modified(ahead)
            .unwrap();
        let moved = b.source.head("a.json").await.expect("head");
        assert_ne!(moved.etag, v1.etag);
        let v2 = b.source.put("a.json", b"v2".to_vec()).await.expect("put");
        assert!(
            v2.last_modified_ms >= moved.last_modified_ms,
            "{v2:?} is older than {moved:?}"
        );
        assert_ne!(v2.etag, moved.etag);
        assert_eq!(b.source.head("a.json").await.expect("head"), v2);
    }

    #[tokio::test]
    async fn urls_open_folders() {
        let dir = tempfile::tempdir().unwrap();
        for scheme in ["dir", "file"] {
            let path = dir.path().join(format!("{scheme}-inbox"));
            let url = format!("{scheme}://{}", path.display());
            let source = object_source::open(&url).await.expect("open");
            assert_eq!(source.bucket(), format!("{scheme}-inbox"));
            let err = source
                .list("", None, 10)
                .await
                .expect_err("not created yet");
            assert!(matches!(err, ObjectError::NotReady(_)), "{err:?}");
            object_source::create_bucket(&url).await.expect("create");
            object_source::create_bucket(&url)
                .await
                .expect("create again");
            source.put("a.json", b"{}".to_vec()).await.expect("put");
            assert_eq!(source.get("a.json", 10).await.expect("get").bytes, b"{}");
        }
        assert_eq!(
            object_source::parse_url("dir://data/inbox").unwrap(),
            Location::Local {
                root: "data/inbox".into()
            }
        );
    }
}

// ---------------------------------------------------------------------------------------------
// S3 only

mod s3_only {
    use super::*;

    /// `open` turns on path-style addressing by itself when an endpoint override is set; without
    /// it the SDK would put the bucket into the emulator's IP address as a host name.
    #[tokio::test]
    async fn urls_open_buckets_on_the_emulator() {
        let config = emulator_config().await;
        let bucket = unique_bucket();
        let url = format!("s3://{bucket}");
        object_source::create_bucket(&url).await.expect("create");
        object_source::create_bucket(&url)
            .await
            .expect("create again");
        let source = object_source::open(&url).await.expect("open");
        assert_eq!(source.bucket(), bucket);
        let put = source.put("a.json", b"{}".to_vec()).await.expect("put");
        let got = source.get("a.json", 10).await.expect("get");
        assert_eq!(got.bytes, b"{}");
        assert_eq!(got.meta.etag, put.etag);
        let explicit = object_source::open(&format!("{url}?path_style=true"))
            .await
            .expect("open");
        assert_eq!(explicit.head("a.json").await.expect("head").etag, put.etag);

        let client = S3Source::new(&config, &bucket, true)
            .expect("source")
            .client()
            .clone();
        Backend {
            kind: Kind::S3,
            source: Arc::new(S3Source::with_client(client.clone(), &bucket).expect("source")),
            missing: source,
            root: None,
            _dir: None,
            s3: Some((client, bucket)),
        }
        .finish()
        .await;
    }
}
