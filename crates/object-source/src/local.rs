//! The local-folder backend: a directory acting as the bucket, for running without AWS.
//!
//! A key is a `/`-separated path relative to the root folder. Every segment must be a plain
//! name: not empty, `.` or `..`, no backslash or NUL, not starting with `.` and not ending in
//! `.tmp` or `.part` (those names are left to writers for partial files, which listings skip, so
//! that writing a temporary file and renaming it publishes an object atomically). Nothing is read
//! through a symbolic link: listings skip them and `get`/`head`/`put` refuse keys that pass one.
//!
//! The ETag of a file is `"<mtime in ns since the epoch, hex>-<size, hex>"`, taken from the
//! file's metadata. It is the same in `list`, `head`, `get` and `put` (a content hash would make
//! every listing read every file), it stays equal while the file is untouched, and it changes
//! when the file is replaced: [`LocalFolder::put`] gives the new file an mtime later than the one
//! it replaces, and other writers would have to replace a file with one of the same size within
//! the file system's timestamp granularity to go unnoticed.

use crate::{
    ListPage, MAX_KEY_BYTES, Object, ObjectError, ObjectMeta, ObjectSource, Result,
    effective_page_size,
};
use async_trait::async_trait;
use std::collections::BinaryHeap;
use std::fs;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Longest key segment (file or folder name), in bytes.
pub const MAX_SEGMENT_BYTES: usize = 255;

/// A folder acting as a bucket.
#[derive(Debug, Clone)]
pub struct LocalFolder {
    root: PathBuf,
    name: String,
}

impl LocalFolder {
    /// A source on the folder `root` (made absolute against the working directory). Touches
    /// nothing: a missing folder makes every call fail with `NotReady` until it is created
    /// ([`LocalFolder::create`]).
    pub fn new(root: impl Into<PathBuf>) -> Result<Self> {
        let root = root.into();
        let root = std::path::absolute(&root).map_err(|e| {
            ObjectError::Invalid(format!("folder {:?} has no absolute form: {e}", root))
        })?;
        let name = root
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| root.display().to_string());
        Ok(Self { root, name })
    }

    /// The folder, as an absolute path.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Creates the folder (and its parents); fine if it exists.
    pub async fn create(&self) -> Result<()> {
        let root = self.root.clone();
        blocking(move || {
            fs::create_dir_all(&root).map_err(|e| io_error("creating folder", &root, e))
        })
        .await
    }
}

#[async_trait]
impl ObjectSource for LocalFolder {
    fn bucket(&self) -> &str {
        &self.name
    }

    async fn list(
        &self,
        prefix: &str,
        continuation: Option<&str>,
        page_size: u32,
    ) -> Result<ListPage> {
        let root = self.root.clone();
        let prefix = prefix.to_string();
        let after = continuation.filter(|c| !c.is_empty()).map(str::to_string);
        let page_size = effective_page_size(page_size) as usize;
        blocking(move || list_blocking(&root, &prefix, after.as_deref(), page_size)).await
    }

    async fn get(&self, key: &str, max_bytes: u64) -> Result<Object> {
        check_key(key)?;
        let root = self.root.clone();
        let key = key.to_string();
        blocking(move || get_blocking(&root, key, max_bytes)).await
    }

    async fn put(&self, key: &str, bytes: Vec<u8>) -> Result<ObjectMeta> {
        check_key(key)?;
        let root = self.root.clone();
        let key = key.to_string();
        blocking(move || put_blocking(&root, key, &bytes)).await
    }

    async fn head(&self, key: &str) -> Result<ObjectMeta> {
        check_key(key)?;
        let root = self.root.clone();
        let key = key.to_string();
        blocking(move || {
            check_root(&root)?;
            let (_, meta) = resolve(&root, &key)?;
            if !meta.is_file() {
                return Err(ObjectError::NotFound(key));
            }
            object_meta(key, &meta)
        })
        .await
    }
}

/// Runs file system work off the async threads.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ObjectError::Internal(format!("file system task failed: {e}")))?
}

/// Names that listings skip: hidden files and writers' partial files.
pub fn is_ignored_name(name: &str) -> bool {
    name.starts_with('.') || name.ends_with(".tmp") || name.ends_with(".part")
}

/// Checks that `key` is a valid key for a local folder (see the module docs).
pub fn check_key(key: &str) -> Result<()> {
    let invalid = |why: &str| Err(ObjectError::InvalidKey(format!("{key:?}: {why}")));
    if key.is_empty() {
        return invalid("empty");
    }
    if key.len() > MAX_KEY_BYTES {
        return invalid(&format!("longer than {MAX_KEY_BYTES} bytes"));
    }
    if key.contains('\0') {
        return invalid("contains NUL");
    }
    if key.contains('\\') {
        return invalid("contains a backslash; keys separate folders with '/'");
    }
    if key.starts_with('/') {
        return invalid("absolute; keys are relative to the bucket");
    }
    for segment in key.split('/') {
        if segment.is_empty() {
            return invalid("has an empty segment ('//' or a trailing '/')");
        }
        if segment == "." || segment == ".." {
            return invalid("has a '.' or '..' segment");
        }
        if is_ignored_name(segment) {
            return invalid(&format!(
                "segment {segment:?} starts with '.' or ends in .tmp/.part; such names are kept \
                 for partial files and never listed"
            ));
        }
        if segment.len() > MAX_SEGMENT_BYTES {
            return invalid(&format!(
                "a segment is longer than {MAX_SEGMENT_BYTES} bytes"
            ));
        }
    }
    Ok(())
}

fn io_error(what: &str, path: &Path, e: io::Error) -> ObjectError {
    let message = format!("{what} {}: {e}", path.display());
    match e.kind() {
        io::ErrorKind::TimedOut
        | io::ErrorKind::Interrupted
        | io::ErrorKind::WouldBlock
        | io::ErrorKind::ResourceBusy
        | io::ErrorKind::StorageFull => ObjectError::Unavailable(message),
        _ => ObjectError::Internal(message),
    }
}

/// `NotReady` unless the root folder exists.
fn check_root(root: &Path) -> Result<()> {
    match fs::metadata(root) {
        Ok(meta) if meta.is_dir() => Ok(()),
        Ok(_) => Err(ObjectError::NotReady(format!(
            "{} is not a folder; point the object source at a folder",
            root.display()
        ))),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Err(ObjectError::NotReady(format!(
            "folder {} does not exist; create it (`mkdir -p {}` or object_source::create_bucket \
             with dir://{})",
            root.display(),
            root.display(),
            root.display()
        ))),
        Err(e) => Err(io_error("checking folder", root, e)),
    }
}

/// The path of `key` and its metadata (not following links), refusing keys that pass through a
/// symbolic link. `NotFound` if any part of it is missing or not a folder.
fn resolve(root: &Path, key: &str) -> Result<(PathBuf, fs::Metadata)> {
    let mut path = root.to_path_buf();
    let mut segments = key.split('/').peekable();
    while let Some(segment) = segments.next() {
        path.push(segment);
        let meta = match fs::symlink_metadata(&path) {
            Ok(meta) => meta,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
                ) =>
            {
                return Err(ObjectError::NotFound(key.to_string()));
            }
            Err(e) => return Err(io_error("reading", &path, e)),
        };
        if meta.file_type().is_symlink() {
            return Err(ObjectError::InvalidKey(format!(
                "{key:?}: {} is a symbolic link; the folder backend does not follow links",
                path.display()
            )));
        }
        if segments.peek().is_none() {
            return Ok((path, meta));
        }
        if !meta.is_dir() {
            return Err(ObjectError::NotFound(key.to_string()));
        }
    }
    // `check_key` refused the empty key, so the loop ran and returned.
    Err(ObjectError::InvalidKey(format!("{key:?}: empty")))
}

/// Nanoseconds since the Unix epoch (negative before it).
fn mtime_ns(meta: &fs::Metadata) -> Result<i128> {
    let modified = meta.modified().map_err(|e| {
        ObjectError::Internal(format!(
            "this file system reports no modification times: {e}"
        ))
    })?;
    Ok(match modified.duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_nanos() as i128,
        Err(before) => -(before.duration().as_nanos() as i128),
    })
}

/// The ETag of a file with this metadata; see the module docs for why it is built this way.
pub fn etag_of(meta: &fs::Metadata) -> Result<String> {
    let ns = mtime_ns(meta)?;
    let sign = if ns < 0 { "-" } else { "" };
    Ok(format!("{sign}{:x}-{:x}", ns.unsigned_abs(), meta.len()))
}

fn object_meta(key: String, meta: &fs::Metadata) -> Result<ObjectMeta> {
    let ns = mtime_ns(meta)?;
    let ms = ns.div_euclid(1_000_000);
    Ok(ObjectMeta {
        key,
        etag: etag_of(meta)?,
        size: meta.len(),
        last_modified_ms: i64::try_from(ms).unwrap_or(if ms < 0 { i64::MIN } else { i64::MAX }),
        version_id: None,
    })
}

#[cfg(unix)]
fn same_file(a: &fs::Metadata, b: &fs::Metadata) -> bool {
    use std::os::unix::fs::MetadataExt;
    a.dev() == b.dev() && a.ino() == b.ino()
}

#[cfg(not(unix))]
fn same_file(_: &fs::Metadata, _: &fs::Metadata) -> bool {
    true
}

/// Attempts at reading a file that keeps changing while it is read (someone writing it in place
/// instead of renaming a finished file over it).
const READ_ATTEMPTS: u32 = 3;

fn get_blocking(root: &Path, key: String, max_bytes: u64) -> Result<Object> {
    check_root(root)?;
    for _ in 0..READ_ATTEMPTS {
        let (path, link_meta) = resolve(root, &key)?;
        if !link_meta.is_file() {
            return Err(ObjectError::NotFound(key));
        }
        let mut file = match fs::File::open(&path) {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(ObjectError::NotFound(key));
            }
            Err(e) => return Err(io_error("opening", &path, e)),
        };
        let before = file.metadata().map_err(|e| io_error("reading", &path, e))?;
        if !same_file(&before, &link_meta) {
            // Replaced between the link check and the open: look again.
            continue;
        }
        let size = before.len();
        if size > max_bytes {
            return Err(ObjectError::TooLarge {
                size,
                limit: max_bytes,
            });
        }
        let mut bytes = Vec::with_capacity(crate::initial_capacity(size));
        (&mut file)
            .take(max_bytes.saturating_add(1))
            .read_to_end(&mut bytes)
            .map_err(|e| io_error("reading", &path, e))?;
        if bytes.len() as u64 > max_bytes {
            return Err(ObjectError::TooLarge {
                size: bytes.len() as u64,
                limit: max_bytes,
            });
        }
        let after = file.metadata().map_err(|e| io_error("reading", &path, e))?;
        let meta = object_meta(key.clone(), &before)?;
        if bytes.len() as u64 == size && etag_of(&after)? == meta.etag {
            return Ok(Object { meta, bytes });
        }
    }
    Err(ObjectError::Unavailable(format!(
        "{key:?} kept changing while it was read; writers should write a temporary file and \
         rename it"
    )))
}

/// Makes the folders above `key` (never through a link); `InvalidKey` if a prefix of the key is
/// an object or a link.
fn make_parents(root: &Path, key: &str) -> Result<PathBuf> {
    let mut dir = root.to_path_buf();
    let Some((parents, _)) = key.rsplit_once('/') else {
        return Ok(dir);
    };
    for segment in parents.split('/') {
        dir.push(segment);
        match fs::create_dir(&dir) {
            Ok(()) => {
                // Make the new folder's name durable, like the object's.
                sync_dir(dir.parent().unwrap_or(root))?;
                continue;
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(io_error("creating folder", &dir, e)),
        }
        let meta = fs::symlink_metadata(&dir).map_err(|e| io_error("reading", &dir, e))?;
        if meta.file_type().is_symlink() {
            return Err(ObjectError::InvalidKey(format!(
                "{key:?}: {} is a symbolic link; the folder backend does not follow links",
                dir.display()
            )));
        }
        if !meta.is_dir() {
            return Err(ObjectError::InvalidKey(format!(
                "{key:?}: {} is an object, so it cannot also be a folder in a local bucket",
                dir.display()
            )));
        }
    }
    Ok(dir)
}

static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// Creates a new, uniquely named partial file in `dir` (its name is one listings skip).
fn create_temp(dir: &Path) -> Result<(PathBuf, fs::File)> {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or_default();
    for _ in 0..16 {
        let n = TEMP_COUNTER.fetch_add(1, Ordering::Relaxed);
        let path = dir.join(format!(".put-{}-{nanos:x}-{n}.tmp", std::process::id()));
        match fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
        {
            Ok(file) => return Ok((path, file)),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(io_error("creating", &path, e)),
        }
    }
    Err(ObjectError::Internal(format!(
        "could not find a free temporary file name in {}",
        dir.display()
    )))
}

/// Moves the file's mtime past `previous` (the mtime of the file it will replace), so that the
/// ETag changes even for a same-size rewrite within the clock's granularity. Steps grow in case
/// the file system stores coarse timestamps.
fn advance_mtime(file: &fs::File, path: &Path, previous: SystemTime) -> Result<fs::Metadata> {
    let mut meta = file.metadata().map_err(|e| io_error("reading", path, e))?;
    for step in [
        Duration::from_nanos(1),
        Duration::from_micros(1),
        Duration::from_millis(1),
        Duration::from_secs(1),
        Duration::from_secs(2),
    ] {
        let current = meta
            .modified()
            .map_err(|e| io_error("reading mtime of", path, e))?;
        // An mtime at the end of the representable range cannot be passed.
        let Some(later) = previous.checked_add(step).filter(|_| current <= previous) else {
            break;
        };
        file.set_modified(later)
            .map_err(|e| io_error("setting mtime of", path, e))?;
        meta = file.metadata().map_err(|e| io_error("reading", path, e))?;
    }
    Ok(meta)
}

fn put_blocking(root: &Path, key: String, bytes: &[u8]) -> Result<ObjectMeta> {
    check_root(root)?;
    let dir = make_parents(root, &key)?;
    let target = root.join(&key);
    let previous = match fs::symlink_metadata(&target) {
        Ok(meta) if meta.file_type().is_symlink() => {
            return Err(ObjectError::InvalidKey(format!(
                "{key:?}: {} is a symbolic link; the folder backend does not follow links",
                target.display()
            )));
        }
        Ok(meta) if meta.is_dir() => {
            return Err(ObjectError::InvalidKey(format!(
                "{key:?} is a folder of other objects in a local bucket, so it cannot also be an \
                 object"
            )));
        }
        Ok(meta) => Some(
            meta.modified()
                .map_err(|e| io_error("reading mtime of", &target, e))?,
        ),
        Err(e) if e.kind() == io::ErrorKind::NotFound => None,
        Err(e) => return Err(io_error("reading", &target, e)),
    };
    let (temp, mut file) = create_temp(&dir)?;
    let written = (|| {
        file.write_all(bytes)
            .map_err(|e| io_error("writing", &temp, e))?;
        let meta = match previous {
            Some(previous) => advance_mtime(&file, &temp, previous)?,
            None => file.metadata().map_err(|e| io_error("reading", &temp, e))?,
        };
        file.sync_all().map_err(|e| io_error("syncing", &temp, e))?;
        drop(file);
        fs::rename(&temp, &target).map_err(|e| io_error("renaming into place", &target, e))?;
        Ok(meta)
    })();
    let meta = match written {
        Ok(meta) => meta,
        Err(e) => {
            // Best effort: the name is one listings skip anyway.
            let _ = fs::remove_file(&temp);
            return Err(e);
        }
    };
    // Make the rename itself durable.
    sync_dir(&dir)?;
    object_meta(key, &meta)
}

/// Flushes a folder's entries (names created or renamed in it) to disk.
fn sync_dir(dir: &Path) -> Result<()> {
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io_error("syncing folder", dir, e))
}

/// A directory entry in listing order: files by name, folders by name + '/' (which is where
/// their keys fall among their siblings in byte order).
#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Entry {
    sort: String,
    is_dir: bool,
}

impl Entry {
    fn name(&self) -> &str {
        if self.is_dir {
            self.sort.strip_suffix('/').unwrap_or(&self.sort)
        } else {
            &self.sort
        }
    }
}

struct ListQuery<'a> {
    prefix: &'a str,
    after: Option<&'a str>,
    /// Objects to collect: the page plus one, to know whether there is a next page.
    limit: usize,
}

impl ListQuery<'_> {
    /// Whether the entry at `full` (a key, or a folder's key prefix ending in '/') can hold keys
    /// this query returns.
    fn wants(&self, full: &str, is_dir: bool) -> bool {
        let in_prefix = full.starts_with(self.prefix) || (is_dir && self.prefix.starts_with(full));
        let past = match self.after {
            None => true,
            Some(after) => full > after || (is_dir && after.starts_with(full)),
        };
        in_prefix && past
    }
}

fn list_blocking(
    root: &Path,
    prefix: &str,
    after: Option<&str>,
    page_size: usize,
) -> Result<ListPage> {
    check_root(root)?;
    let query = ListQuery {
        prefix,
        after,
        limit: page_size + 1,
    };
    let mut objects = Vec::new();
    walk(root, "", &query, &mut objects)?;
    let next = if objects.len() > page_size {
        objects.truncate(page_size);
        objects.last().map(|o| o.key.clone())
    } else {
        None
    };
    Ok(ListPage { objects, next })
}

/// Appends the wanted objects below `dir` (whose keys start with `base`) in key order, until
/// `out` holds `query.limit`. Holds at most that many entries of each folder at a time: it picks
/// the smallest wanted entries in one pass over the folder and passes over it again only if
/// those were not enough.
fn walk(dir: &Path, base: &str, query: &ListQuery, out: &mut Vec<ObjectMeta>) -> Result<()> {
    let mut cursor: Option<String> = None;
    loop {
        let want = query.limit.saturating_sub(out.len());
        if want == 0 {
            return Ok(());
        }
        let batch = smallest_entries(dir, base, query, cursor.as_deref(), want)?;
        let exhausted = batch.len() < want;
        for entry in batch {
            let path = dir.join(entry.name());
            let full = format!("{base}{}", entry.sort);
            if entry.is_dir {
                walk(&path, &full, query, out)?;
            } else if let Some(meta) = listed_file(&path, full)? {
                out.push(meta);
            }
            if out.len() >= query.limit {
                return Ok(());
            }
            cursor = Some(entry.sort);
        }
        if exhausted {
            return Ok(());
        }
    }
}

/// The metadata of a listed file, or None if it went away or is no longer a plain file.
fn listed_file(path: &Path, key: String) -> Result<Option<ObjectMeta>> {
    match fs::symlink_metadata(path) {
        Ok(meta) if meta.is_file() => object_meta(key, &meta).map(Some),
        Ok(_) => Ok(None),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_error("reading", path, e)),
    }
}

/// Up to `want` entries of `dir` after `cursor` that the query wants, smallest first.
fn smallest_entries(
    dir: &Path,
    base: &str,
    query: &ListQuery,
    cursor: Option<&str>,
    want: usize,
) -> Result<Vec<Entry>> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        // Removed while we walked: nothing in it.
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io_error("listing folder", dir, e)),
    };
    // A max-heap of the `want` smallest entries seen so far.
    let mut heap: BinaryHeap<Entry> = BinaryHeap::with_capacity(want + 1);
    for entry in entries {
        let entry = entry.map_err(|e| io_error("listing folder", dir, e))?;
        let name = match entry.file_name().into_string() {
            Ok(name) => name,
            Err(name) => {
                tracing::warn!(folder = %dir.display(), ?name, "skipping a name that is not UTF-8");
                continue;
            }
        };
        if is_ignored_name(&name) {
            continue;
        }
        let file_type = match entry.file_type() {
            Ok(t) => t,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(io_error("reading", &entry.path(), e)),
        };
        if file_type.is_symlink() {
            tracing::debug!(path = %entry.path().display(), "skipping a symbolic link");
            continue;
        }
        let is_dir = file_type.is_dir();
        if !is_dir && !file_type.is_file() {
            continue;
        }
        if name.contains('\\') || name.len() > MAX_SEGMENT_BYTES {
            tracing::warn!(path = %entry.path().display(), "skipping a name that is not a valid key segment");
            continue;
        }
        let sort = if is_dir { format!("{name}/") } else { name };
        if cursor.is_some_and(|c| sort.as_str() <= c) {
            continue;
        }
        if heap.len() >= want && heap.peek().is_some_and(|max| sort >= max.sort) {
            continue;
        }
        let full = format!("{base}{sort}");
        if !is_dir && full.len() > MAX_KEY_BYTES {
            tracing::warn!(path = %entry.path().display(), "skipping a file whose key would be longer than {MAX_KEY_BYTES} bytes");
            continue;
        }
        if !query.wants(&full, is_dir) {
            continue;
        }
        heap.push(Entry { sort, is_dir });
        if heap.len() > want {
            heap.pop();
        }
    }
    Ok(heap.into_sorted_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_checked() {
        for key in [
            "a",
            "a/b.json",
            "makes/2026/01/x.json",
            "é/ü.json",
            "a..b",
            "x.tmpl",
        ] {
            assert!(check_key(key).is_ok(), "{key:?} should be valid");
        }
        for key in [
            "",
            "/a",
            "a/",
            "a//b",
            "./a",
            "a/./b",
            "../a",
            "a/../b",
            "..",
            "a\\b",
            "a\0b",
            ".hidden",
            "a/.hidden/b",
            "a.tmp",
            "a/b.part",
        ] {
            assert!(
                matches!(check_key(key), Err(ObjectError::InvalidKey(_))),
                "{key:?} should be invalid"
            );
        }
        assert!(check_key(&"a".repeat(MAX_SEGMENT_BYTES + 1)).is_err());
        assert!(check_key(&["a"; 600].join("/")).is_err());
    }

    #[test]
    fn folder_entries_sort_like_keys() {
        // Keys under folder "a" start with "a/", which sorts after "a-c" and before "a0".
        let mut entries = [
            Entry {
                sort: "a0".into(),
                is_dir: false,
            },
            Entry {
                sort: "a/".into(),
                is_dir: true,
            },
            Entry {
                sort: "a-c".into(),
                is_dir: false,
            },
        ];
        entries.sort();
        let names: Vec<_> = entries.iter().map(|e| e.sort.as_str()).collect();
        assert_eq!(names, ["a-c", "a/", "a0"]);
        assert_eq!(entries[1].name(), "a");
    }

    #[test]
    fn query_prunes_folders() {
        let q = ListQuery {
            prefix: "makes/20",
            after: Some("makes/2026/b"),
            limit: 10,
        };
        assert!(q.wants("makes/", true));
        assert!(q.wants("makes/2026/", true));
        assert!(q.wants("makes/2027/", true));
        assert!(!q.wants("makes/2025/", true));
        assert!(!q.wants("makes/19/", true));
        assert!(!q.wants("recipes/", true));
        assert!(!q.wants("makes/2026/a", false));
        assert!(!q.wants("makes/2026/b", false));
        assert!(q.wants("makes/2026/c", false));
    }

    #[test]
    fn etags_encode_mtime_and_size() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        fs::write(&path, b"12345").unwrap();
        let file = fs::File::options().write(true).open(&path).unwrap();
        file.set_modified(UNIX_EPOCH + Duration::new(1, 5)).unwrap();
        let meta = fs::metadata(&path).unwrap();
        assert_eq!(etag_of(&meta).unwrap(), "3b9aca05-5");
        let meta = object_meta("f".into(), &meta).unwrap();
        assert_eq!(meta.last_modified_ms, 1000);
    }
}
