//! Image names as the Docker CLI reads them (distribution's `reference`
//! package, `ParseNormalizedNamed`): which registry, repository and tag or
//! digest a name like `app`, `reg:5000/team/app:v1` or `app@sha256:…`
//! means.

use super::RegistryError;

/// Docker Hub as a name says it, and where its API answers.
const HUB: &str = "docker.io";
const HUB_API: &str = "registry-1.docker.io";

/// One image name, resolved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reference {
    /// Where the API answers: `host[:port]` (`registry-1.docker.io` for
    /// Docker Hub).
    pub registry: String,
    /// The repository path (`library/busybox` for `busybox`).
    pub repository: String,
    /// The tag (`latest` when none is given) or the digest.
    pub reference: String,
}

impl Reference {
    /// Reads `name`.
    pub fn parse(name: &str) -> Result<Self, RegistryError> {
        let bad = |why: &str| RegistryError::BadReference {
            name: name.to_string(),
            why: why.to_string(),
        };
        if name.is_empty() {
            return Err(bad("it is empty"));
        }
        let (rest, digest) = match name.split_once('@') {
            Some((r, d)) => {
                if !d.contains(':') {
                    return Err(bad("the digest after `@` needs `ALGORITHM:HEX`"));
                }
                (r, Some(d))
            }
            None => (name, None),
        };
        // A `:` after the last `/` starts the tag; one before it is a port.
        let (path, tag) = match rest.rsplit_once(':') {
            Some((p, t)) if !t.contains('/') => (p, Some(t)),
            _ => (rest, None),
        };
        if let Some(t) = tag {
            let ok = !t.is_empty()
                && t.len() <= 128
                && t.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
                && !t.starts_with(['.', '-']);
            if !ok {
                return Err(bad("a tag is up to 128 letters, digits, `_`, `.` and `-`"));
            }
        }
        let (domain, repo) = match path.split_once('/') {
            Some((first, rest))
                if first.contains(['.', ':'])
                    || first == "localhost"
                    || first.chars().any(|c| c.is_ascii_uppercase()) =>
            {
                (first, rest.to_string())
            }
            _ => (HUB, path.to_string()),
        };
        let (registry, repository) = if domain == HUB || domain == "index.docker.io" {
            let repo = if repo.contains('/') {
                repo
            } else {
                format!("library/{repo}")
            };
            (HUB_API.to_string(), repo)
        } else {
            (domain.to_string(), repo)
        };
        let component_ok = |c: &str| {
            !c.is_empty()
                && c.chars()
                    .all(|ch| ch.is_ascii_lowercase() || ch.is_ascii_digit() || "._-".contains(ch))
                && c.starts_with(|ch: char| ch.is_ascii_alphanumeric())
                && c.ends_with(|ch: char| ch.is_ascii_alphanumeric())
        };
        if !repository.split('/').all(component_ok) {
            return Err(bad(
                "a repository is lower-case letters, digits and `._-` between `/`",
            ));
        }
        Ok(Self {
            registry,
            repository,
            reference: digest
                .map(str::to_string)
                .or(tag.map(str::to_string))
                .unwrap_or_else(|| "latest".into()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(name: &str) -> (String, String, String) {
        let r = Reference::parse(name).unwrap();
        (r.registry, r.repository, r.reference)
    }

    #[test]
    fn names_resolve_as_the_docker_cli_resolves_them() {
        let t = |a: &str, b: &str, c: &str| (a.to_string(), b.to_string(), c.to_string());
        assert_eq!(
            parts("busybox"),
            t("registry-1.docker.io", "library/busybox", "latest")
        );
        assert_eq!(
            parts("team/app:v1"),
            t("registry-1.docker.io", "team/app", "v1")
        );
        assert_eq!(
            parts("docker.io/library/app"),
            t("registry-1.docker.io", "library/app", "latest")
        );
        assert_eq!(
            parts("127.0.0.1:5000/a/b:v2"),
            t("127.0.0.1:5000", "a/b", "v2")
        );
        assert_eq!(parts("localhost/app"), t("localhost", "app", "latest"));
        assert_eq!(
            parts("reg.example:5000/app"),
            t("reg.example:5000", "app", "latest")
        );
        assert_eq!(
            parts("reg.example/app:v1@sha256:abc"),
            t("reg.example", "app", "sha256:abc")
        );
    }

    #[test]
    fn bad_names_say_what_is_wrong() {
        for bad in [
            "",
            "App",
            "a//b",
            "app:",
            "app:-x",
            "app@nodigest",
            "reg:5000/A",
        ] {
            let e = Reference::parse(bad).unwrap_err();
            assert!(
                matches!(e, RegistryError::BadReference { .. }),
                "{bad}: {e:?}"
            );
            assert!(e.to_string().contains(&format!("`{bad}`")), "{e}");
        }
    }
}
