//! Target platforms and attestations, read as `docker compose build` 2.40
//! reads them (through buildx): which platforms a service is built for, and
//! which `attest:` frontend attributes it asks BuildKit for. Whether the
//! builder can do them is [`super::export`]'s call.

use std::collections::BTreeMap;

use crate::compose::{Project, Service};

use super::plan::{BuildOptions, PlanError};

/// The platforms a build targets, and the setting that named them (for
/// messages).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PlatformSet {
    /// Normalised `os/arch[/variant]`, in the order given, without repeats.
    /// Empty: the builder's own platform.
    pub platforms: Vec<String>,
    /// Where they came from: `services.NAME.build.platforms`, `--platform`…
    pub key: String,
}

impl PlatformSet {
    /// More than one platform: the result is an image index.
    pub fn is_multi(&self) -> bool {
        self.platforms.len() > 1
    }
}

/// The service's platforms. compose 2.40 (`applyPlatforms`): when the
/// service has no `platform:`, `DOCKER_DEFAULT_PLATFORM` becomes it, and
/// must then be one of `build.platforms`; a service `platform:` is built
/// alone when `build.platforms` is empty. compose reads the variable from
/// the project environment, so a `.env` file can set it. cbuild's
/// `--platform` (as buildx's, or bake's `--set *.platform=`) replaces the
/// set of every service built.
pub fn resolve(
    project: &Project,
    svc: &Service,
    opts: &BuildOptions,
) -> Result<PlatformSet, PlanError> {
    let name = &svc.name;
    let listed: Vec<String> = svc
        .build
        .as_ref()
        .map(|b| b.platforms.clone())
        .unwrap_or_default();
    let listed_key = format!("services.{name}.build.platforms");
    if !opts.platforms.is_empty() {
        let mut set = Vec::new();
        for p in opts.platforms.iter().flat_map(|p| p.split(',')) {
            push_normalized(&mut set, p, "--platform")?;
        }
        return Ok(PlatformSet {
            platforms: set,
            key: "--platform".into(),
        });
    }
    let mut service_platform = svc
        .config
        .get("platform")
        .and_then(|p| p.as_str())
        .filter(|p| !p.is_empty())
        .map(|p| (p.to_string(), format!("services.{name}.platform")));
    if service_platform.is_none() {
        if let Some(d) = project
            .environment
            .get("DOCKER_DEFAULT_PLATFORM")
            .filter(|d| !d.is_empty())
        {
            if !listed.is_empty() && !listed.contains(d) {
                return Err(PlanError::BadValue {
                    key: listed_key,
                    message: format!(
                        "does not include `{d}`, which DOCKER_DEFAULT_PLATFORM asks for; add it, or unset DOCKER_DEFAULT_PLATFORM"
                    ),
                });
            }
            service_platform = Some((d.clone(), "DOCKER_DEFAULT_PLATFORM".into()));
        }
    }
    let (given, key) = match (listed.is_empty(), service_platform) {
        (true, Some((p, key))) => (vec![p], key),
        _ => (listed, listed_key),
    };
    let mut set = Vec::new();
    for p in &given {
        push_normalized(&mut set, p, &key)?;
    }
    Ok(PlatformSet {
        platforms: set,
        key,
    })
}

fn push_normalized(set: &mut Vec<String>, p: &str, key: &str) -> Result<(), PlanError> {
    let n = normalize(p).map_err(|message| PlanError::BadValue {
        key: key.to_string(),
        message,
    })?;
    if !set.contains(&n) {
        set.push(n);
    }
    Ok(())
}

/// A platform as containerd's `platforms.Parse` and `Normalize` read it,
/// which is what buildx sends and BuildKit matches: `os/arch[/variant]`,
/// architecture aliases folded (`x86_64` is `amd64`, `aarch64` is
/// `arm64`, `i386` is `386`), a lone architecture meaning Linux. Written
/// here because it is a few string rules, not worth a Go-port crate.
pub fn normalize(p: &str) -> Result<String, String> {
    let p = p.trim();
    let parts: Vec<String> = p.split('/').map(|s| s.to_ascii_lowercase()).collect();
    let bad = || {
        format!("`{p}` is not a platform; write `os/arch[/variant]`, such as `linux/amd64` or `linux/arm64`")
    };
    if parts.iter().any(|s| s.is_empty()) || parts.len() > 3 {
        return Err(bad());
    }
    let os_of = |s: &str| {
        if s == "macos" {
            "darwin".to_string()
        } else {
            s.to_string()
        }
    };
    let (os, arch, variant) = match parts.as_slice() {
        [one] if KNOWN_OS.contains(&one.as_str()) => {
            (os_of(one), "amd64".to_string(), String::new())
        }
        [one] if KNOWN_ARCH.contains(&one.as_str()) => {
            ("linux".to_string(), one.clone(), String::new())
        }
        [_] => return Err(bad()),
        [os, arch] => (os_of(os), arch.clone(), String::new()),
        [os, arch, variant] => (os_of(os), arch.clone(), variant.clone()),
        _ => return Err(bad()),
    };
    let (arch, variant) = match (arch.as_str(), variant.as_str()) {
        ("i386", _) => ("386".to_string(), String::new()),
        ("x86_64" | "x86-64" | "amd64", "v1") => ("amd64".to_string(), String::new()),
        ("x86_64" | "x86-64", v) => ("amd64".to_string(), v.to_string()),
        ("aarch64" | "arm64", "8" | "v8" | "v8.0") => ("arm64".to_string(), String::new()),
        ("aarch64", v) => ("arm64".to_string(), v.to_string()),
        ("armhf", _) => ("arm".to_string(), "v7".to_string()),
        ("armel", _) => ("arm".to_string(), "v6".to_string()),
        ("arm", "") | ("arm", "7") => ("arm".to_string(), "v7".to_string()),
        ("arm", v @ ("5" | "6" | "8")) => ("arm".to_string(), format!("v{v}")),
        (a, v) => (a.to_string(), v.to_string()),
    };
    Ok(if variant.is_empty() {
        format!("{os}/{arch}")
    } else {
        format!("{os}/{arch}/{variant}")
    })
}

const KNOWN_OS: &[&str] = &[
    "aix",
    "android",
    "darwin",
    "macos",
    "dragonfly",
    "freebsd",
    "hurd",
    "illumos",
    "ios",
    "js",
    "linux",
    "nacl",
    "netbsd",
    "openbsd",
    "plan9",
    "solaris",
    "windows",
    "zos",
    "wasip1",
];
const KNOWN_ARCH: &[&str] = &[
    "386", "i386", "amd64", "x86_64", "x86-64", "arm", "armhf", "armel", "arm64", "aarch64",
    "ppc64", "ppc64le", "riscv64", "s390x", "mips", "mipsle", "mips64", "mips64le", "loong64",
    "wasm",
];

/// Whether a builder platform (`os/arch[/variant]` as a worker lists it)
/// builds `wanted`: same OS and architecture, and the variant asked for,
/// if any.
pub fn builds_for(worker_platform: &str, wanted: &str) -> bool {
    let Ok(have) = normalize(worker_platform) else {
        return false;
    };
    let have: Vec<&str> = have.split('/').collect();
    let want: Vec<&str> = wanted.split('/').collect();
    have.len() >= 2
        && want.len() >= 2
        && have[0] == want[0]
        && have[1] == want[1]
        && (want.len() == 2 || have.get(2) == want.get(2))
}

/// One attestation a build asks for: `type` and the frontend attribute
/// value, or `None` when it is turned off.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attest {
    /// `provenance` or `sbom`.
    pub kind: String,
    /// The `attest:KIND` value (`type=provenance,mode=max`); `None`: off.
    pub value: Option<String>,
    /// The setting that asked for it (`services.NAME.build.provenance`,
    /// `--sbom`).
    pub key: String,
}

/// The service's attestations: the `provenance` and `sbom` build keys,
/// each replaced by its flag when given (compose 2.40 passes the flags to
/// bake as `*.attest=`, which win). A value is a boolean or buildx's
/// attestation CSV (`mode=max`, `generator=IMAGE`), read as buildx's
/// `CanonicalizeAttest` and `Attests.ToMap` do. Unlike compose 2.40's bake
/// path, which drops a `false` and then gets buildx's default provenance,
/// `provenance: false` turns it off, as the key means (and as bake reading
/// the same Compose file does).
pub fn attests(svc: &Service, opts: &BuildOptions) -> Result<Vec<Attest>, PlanError> {
    let build = svc.config.get("build");
    let mut out = Vec::new();
    for (kind, flag) in [("provenance", &opts.provenance), ("sbom", &opts.sbom)] {
        let (given, key) = match flag {
            Some(v) => (Some(v.clone()), format!("--{kind}")),
            None => (
                build.and_then(|b| b.get(kind)).and_then(|v| match v {
                    serde_json::Value::String(s) => Some(s.clone()),
                    serde_json::Value::Bool(b) => Some(b.to_string()),
                    _ => None,
                }),
                format!("services.{}.build.{kind}", svc.name),
            ),
        };
        let Some(given) = given.filter(|g| !g.trim().is_empty()) else {
            continue;
        };
        let value = attest_value(kind, &given).map_err(|message| PlanError::BadValue {
            key: key.clone(),
            message,
        })?;
        out.push(Attest {
            kind: kind.to_string(),
            value,
            key,
        });
    }
    Ok(out)
}

/// Go's `strconv.ParseBool`.
fn parse_bool(s: &str) -> Option<bool> {
    match s {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

/// The `attest:KIND` attribute for `given`, `None` when it turns the
/// attestation off.
fn attest_value(kind: &str, given: &str) -> Result<Option<String>, String> {
    if let Some(on) = parse_bool(given.trim()) {
        return Ok(on.then(|| format!("type={kind}")));
    }
    let mut attrs = BTreeMap::new();
    for field in super::plan::csv_fields(given)? {
        let Some((k, v)) = field.split_once('=') else {
            return Err(format!(
                "`{field}` is not `key=value` (write `true`, `false` or fields such as `mode=max`)"
            ));
        };
        match k.trim().to_ascii_lowercase().as_str() {
            "type" if v != kind => {
                return Err(format!(
                    "`type={v}` in the {kind} setting; leave `type` out"
                ))
            }
            "type" => {}
            "disabled" => match parse_bool(v) {
                Some(true) => return Ok(None),
                Some(false) => {}
                None => return Err(format!("`disabled={v}` is not a boolean")),
            },
            _ => {
                attrs.insert(k.to_string(), v.to_string());
            }
        }
    }
    let mut value = format!("type={kind}");
    for (k, v) in attrs {
        value.push(',');
        value.push_str(&csv_field(&format!("{k}={v}")));
    }
    Ok(Some(value))
}

/// One field as Go's `encoding/csv` writes it: quoted when it holds a
/// comma or a quote, inner quotes doubled.
fn csv_field(f: &str) -> String {
    if f.contains([',', '"']) {
        format!("\"{}\"", f.replace('"', "\"\""))
    } else {
        f.to_string()
    }
}

/// The image BuildKit runs to make an SBOM when none is named
/// (moby/buildkit `frontend/attestations`).
const DEFAULT_SBOM_GENERATOR: &str = "docker/buildkit-syft-scanner";

/// A failure of the SBOM generator image (it could not be pulled or
/// resolved), said with the setting that asked for the SBOM and what to do.
/// `None` when the build asked for no SBOM or the failure is another one.
pub fn sbom_refusal(attests: &[Attest], message: &str) -> Option<(String, String)> {
    let sbom = attests.iter().find(|a| a.kind == "sbom")?;
    let value = sbom.value.as_deref()?;
    let generator = super::plan::csv_fields(value)
        .ok()?
        .into_iter()
        .find_map(|f| f.strip_prefix("generator=").map(str::to_string));
    let image = generator.as_deref().unwrap_or(DEFAULT_SBOM_GENERATOR);
    // A reference as the daemon prints it: `docker.io/` added, tag kept.
    let short = image
        .rsplit_once(':')
        .map_or(image, |(n, t)| if t.contains('/') { image } else { n });
    if !message.contains(short) {
        return None;
    }
    Some((
        format!(
            "`{}`: the builder cannot get the SBOM generator image `{image}`: {message}",
            sbom.key
        ),
        "BuildKit runs that image to scan the result: make it reachable from the builder (a registry or mirror it can pull from, with `sbom: generator=REGISTRY/IMAGE`), or turn the SBOM off (`--sbom=false`)".into(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn platforms_normalise_like_containerd() {
        for (given, want) in [
            ("linux/amd64", "linux/amd64"),
            ("linux/x86_64", "linux/amd64"),
            ("Linux/AMD64", "linux/amd64"),
            ("linux/amd64/v1", "linux/amd64"),
            ("linux/amd64/v3", "linux/amd64/v3"),
            ("linux/i386", "linux/386"),
            ("linux/aarch64", "linux/arm64"),
            ("linux/arm64/v8", "linux/arm64"),
            ("linux/arm", "linux/arm/v7"),
            ("linux/armhf", "linux/arm/v7"),
            ("linux/arm/6", "linux/arm/v6"),
            ("arm64", "linux/arm64"),
            ("linux", "linux/amd64"),
        ] {
            assert_eq!(normalize(given).as_deref(), Ok(want), "{given}");
        }
        for bad in ["", "linux/", "/amd64", "a/b/c/d", "commodore"] {
            let e = normalize(bad).unwrap_err();
            assert!(e.contains("os/arch"), "{bad}: {e}");
        }
    }

    /// Plans the service `app` of `compose` with `opts`: its platform set
    /// and `platform` attribute, or the error.
    fn planned(compose: &str, opts: BuildOptions) -> Result<(PlatformSet, Option<String>), String> {
        planned_in(compose, None, &[], opts)
    }

    /// [`planned`] in a project with a `.env` file of `dotenv` and the
    /// process environment `env`.
    fn planned_in(
        compose: &str,
        dotenv: Option<&str>,
        env: &[(&str, &str)],
        opts: BuildOptions,
    ) -> Result<(PlatformSet, Option<String>), String> {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("compose.yaml"), compose).unwrap();
        std::fs::write(dir.path().join("Dockerfile"), "FROM cbuild-base\n").unwrap();
        if let Some(text) = dotenv {
            std::fs::write(dir.path().join(".env"), text).unwrap();
        }
        let project = crate::compose::load(&crate::compose::LoadOptions {
            cwd: dir.path().to_path_buf(),
            project_name: Some("p".into()),
            environment: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            ..Default::default()
        })
        .unwrap();
        let mut b = super::super::plan(&project, &opts).map_err(|e| e.to_string())?;
        let b = b.remove(0);
        Ok((b.platforms, b.solve.frontend_attrs.get("platform").cloned()))
    }

    #[test]
    fn platform_sets_follow_compose_and_the_flag() {
        let listed = "services:\n  app:\n    build:\n      context: .\n      platforms: [linux/x86_64, linux/386]\n";
        let (set, attr) = planned(listed, Default::default()).unwrap();
        assert_eq!(set.platforms, ["linux/amd64", "linux/386"]);
        assert_eq!(set.key, "services.app.build.platforms");
        assert_eq!(attr.as_deref(), Some("linux/amd64,linux/386"));
        // A service `platform:` alone is built for that platform.
        let service = "services:\n  app:\n    platform: linux/386\n    build: .\n";
        let (set, _) = planned(service, Default::default()).unwrap();
        assert_eq!(
            (set.platforms.as_slice(), set.key.as_str()),
            (&["linux/386".to_string()][..], "services.app.platform")
        );
        // DOCKER_DEFAULT_PLATFORM stands for a missing `platform:`, and must
        // be among `platforms:`.
        let env = |compose: &str, v: &str| {
            planned_in(
                compose,
                None,
                &[("DOCKER_DEFAULT_PLATFORM", v)],
                Default::default(),
            )
        };
        let plain = "services:\n  app:\n    build: .\n";
        let (set, _) = env(plain, "linux/386").unwrap();
        assert_eq!(set.platforms, ["linux/386"]);
        assert_eq!(set.key, "DOCKER_DEFAULT_PLATFORM");
        let (set, _) = env(listed, "linux/386").unwrap();
        assert_eq!(set.platforms.len(), 2, "the listed set is still built");
        let e = env(listed, "linux/arm64").unwrap_err();
        assert!(
            e.contains("services.app.build.platforms") && e.contains("DOCKER_DEFAULT_PLATFORM"),
            "{e}"
        );
        // --platform replaces the set.
        let flag = BuildOptions {
            platforms: vec!["linux/386,linux/amd64".into(), "linux/386".into()],
            ..Default::default()
        };
        let (set, attr) = planned(listed, flag).unwrap();
        assert_eq!(set.platforms, ["linux/386", "linux/amd64"]);
        assert_eq!(set.key, "--platform");
        assert_eq!(attr.as_deref(), Some("linux/386,linux/amd64"));
        let (set, attr) = planned(plain, Default::default()).unwrap();
        assert!(set.platforms.is_empty() && attr.is_none());
        let bad = "services:\n  app:\n    build:\n      context: .\n      platforms: [linux/amd64, 'linux//x']\n";
        let e = planned(bad, Default::default()).unwrap_err();
        assert!(
            e.starts_with("`services.app.build.platforms`: `linux//x` is not a platform"),
            "{e}"
        );
    }

    #[test]
    fn default_platform_is_read_from_the_project_env_file_too() {
        // compose reads DOCKER_DEFAULT_PLATFORM from the project
        // environment, which holds `.env`; the process environment wins.
        let plain = "services:\n  app:\n    build: .\n";
        let dotenv = Some("DOCKER_DEFAULT_PLATFORM=linux/386\n");
        let (set, attr) = planned_in(plain, dotenv, &[], Default::default()).unwrap();
        assert_eq!(set.platforms, ["linux/386"]);
        assert_eq!(set.key, "DOCKER_DEFAULT_PLATFORM");
        assert_eq!(attr.as_deref(), Some("linux/386"));
        let shell = [("DOCKER_DEFAULT_PLATFORM", "linux/arm64")];
        let (set, _) = planned_in(plain, dotenv, &shell, Default::default()).unwrap();
        assert_eq!(set.platforms, ["linux/arm64"]);
        // Set empty in the shell, it is unset for compose too.
        let empty = [("DOCKER_DEFAULT_PLATFORM", "")];
        let (set, attr) = planned_in(plain, dotenv, &empty, Default::default()).unwrap();
        assert!(set.platforms.is_empty(), "{set:?}");
        assert_eq!(attr, None);
    }

    #[test]
    fn worker_platforms_match_by_os_arch_and_variant() {
        assert!(builds_for("linux/amd64", "linux/amd64"));
        assert!(builds_for("linux/amd64/v3", "linux/amd64"));
        assert!(!builds_for("linux/amd64", "linux/386"));
        assert!(builds_for("linux/386", "linux/386"));
        assert!(!builds_for("linux/arm/v6", "linux/arm/v7"));
        assert!(builds_for("linux/arm/v7", "linux/arm/v7"));
    }

    #[test]
    fn attestation_values_read_like_buildx() {
        let v = |k, s| attest_value(k, s);
        assert_eq!(v("provenance", "true"), Ok(Some("type=provenance".into())));
        assert_eq!(v("provenance", "1"), Ok(Some("type=provenance".into())));
        assert_eq!(v("provenance", "false"), Ok(None));
        assert_eq!(
            v("provenance", "mode=max"),
            Ok(Some("type=provenance,mode=max".into()))
        );
        assert_eq!(
            v("sbom", "generator=reg/scan:1,type=sbom"),
            Ok(Some("type=sbom,generator=reg/scan:1".into()))
        );
        assert_eq!(v("sbom", "disabled=true"), Ok(None));
        assert_eq!(
            v("provenance", r#""builder-id=a,b",mode=min"#),
            Ok(Some(r#"type=provenance,"builder-id=a,b",mode=min"#.into()))
        );
        assert!(v("provenance", "max").unwrap_err().contains("`max`"));
        assert!(v("sbom", "type=provenance").unwrap_err().contains("type"));
        assert!(v("sbom", "disabled=maybe").unwrap_err().contains("boolean"));
    }

    #[test]
    fn a_missing_sbom_generator_is_named_with_its_setting() {
        let sbom = |value: &str| Attest {
            kind: "sbom".into(),
            value: Some(value.into()),
            key: "services.app.build.sbom".into(),
        };
        let daemon = "failed to resolve source metadata for docker.io/docker/buildkit-syft-scanner:stable-1: dial tcp: no such host";
        let (m, h) = sbom_refusal(&[sbom("type=sbom")], daemon).unwrap();
        assert!(
            m.starts_with("`services.app.build.sbom`: the builder cannot get the SBOM generator image `docker/buildkit-syft-scanner`"),
            "{m}"
        );
        assert!(h.contains("generator="), "{h}");
        let mine = "failed to resolve source metadata for 127.0.0.1:5000/scan:1: not found";
        let (m, _) =
            sbom_refusal(&[sbom("type=sbom,generator=127.0.0.1:5000/scan:1")], mine).unwrap();
        assert!(m.contains("`127.0.0.1:5000/scan:1`"), "{m}");
        assert!(sbom_refusal(&[sbom("type=sbom")], "exit code: 1").is_none());
        assert!(sbom_refusal(&[], daemon).is_none());
    }
}
