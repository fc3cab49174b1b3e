//! The key layout: which objects in the bucket are recipes, which are makes, and which are
//! ignored. The default is `recipes/…` and `makes/…`, files ending in `.json`.

use crate::JobKind;

/// Prefixes and file suffix that classify keys. Prefixes are plain string prefixes of the key
/// (as S3 lists them); the suffix is compared without regard to ASCII case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyLayout {
    pub recipes_prefix: String,
    pub makes_prefix: String,
    pub suffix: String,
}

impl Default for KeyLayout {
    fn default() -> Self {
        Self {
            recipes_prefix: "recipes/".into(),
            makes_prefix: "makes/".into(),
            suffix: ".json".into(),
        }
    }
}

/// What the layout says about one key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Classified {
    Job(JobKind),
    /// Not ours; the reason is for a log line.
    Ignored(&'static str),
}

impl KeyLayout {
    /// Checks that the two prefixes cannot both match one key, which would make a key's kind
    /// depend on the order of checks.
    pub fn validate(&self) -> Result<(), String> {
        let (r, m) = (&self.recipes_prefix, &self.makes_prefix);
        if r.starts_with(m.as_str()) || m.starts_with(r.as_str()) {
            return Err(format!(
                "the recipes prefix {r:?} and the makes prefix {m:?} overlap: one key could be \
                 both; use disjoint prefixes such as recipes/ and makes/"
            ));
        }
        Ok(())
    }

    pub fn classify(&self, key: &str) -> Classified {
        if key.ends_with('/') {
            return Classified::Ignored("a folder marker");
        }
        let kind = if key.starts_with(self.recipes_prefix.as_str()) {
            JobKind::Recipe
        } else if key.starts_with(self.makes_prefix.as_str()) {
            JobKind::Make
        } else {
            return Classified::Ignored("outside the recipes and makes prefixes");
        };
        let file_name = key.rsplit('/').next().unwrap_or(key);
        if file_name.starts_with('.') {
            // Editors' and copy tools' temporary files (".name.json.swp", ".name.json.XXXX").
            return Classified::Ignored("a hidden file");
        }
        let suffix = self.suffix.as_bytes();
        let ends_with_suffix = key.len() >= suffix.len()
            && key.as_bytes()[key.len() - suffix.len()..].eq_ignore_ascii_case(suffix);
        if !ends_with_suffix {
            return Classified::Ignored("not a file with the recipe suffix");
        }
        Classified::Job(kind)
    }

    /// The prefixes a poll lists (disjoint once [`KeyLayout::validate`] passed).
    pub fn prefixes(&self) -> Vec<&str> {
        vec![self.recipes_prefix.as_str(), self.makes_prefix.as_str()]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_layout_sorts_keys() {
        let l = KeyLayout::default();
        assert_eq!(
            l.classify("recipes/pancakes.json"),
            Classified::Job(JobKind::Recipe)
        );
        assert_eq!(
            l.classify("recipes/2026/a.JSON"),
            Classified::Job(JobKind::Recipe)
        );
        assert_eq!(
            l.classify("makes/2026/11/x.json"),
            Classified::Job(JobKind::Make)
        );
        for ignored in [
            "makes/",
            "makes/2026/",
            "notes/a.json",
            "makes/a.txt",
            "makes/.a.json",
            "makes/x/.a.json.swp",
            "recipes.json",
            "Makes/a.json",
        ] {
            assert!(
                matches!(l.classify(ignored), Classified::Ignored(_)),
                "{ignored:?} should be ignored"
            );
        }
    }

    #[test]
    fn custom_layouts_apply_and_overlaps_are_refused() {
        let l = KeyLayout {
            recipes_prefix: "in/originals/".into(),
            makes_prefix: "in/cooked/".into(),
            suffix: ".recipe".into(),
        };
        assert!(l.validate().is_ok());
        assert_eq!(
            l.classify("in/cooked/a.recipe"),
            Classified::Job(JobKind::Make)
        );
        assert!(matches!(
            l.classify("in/cooked/a.json"),
            Classified::Ignored(_)
        ));
        let overlapping = KeyLayout {
            recipes_prefix: "in/".into(),
            makes_prefix: "in/makes/".into(),
            suffix: ".json".into(),
        };
        assert!(overlapping.validate().is_err());
    }
}
