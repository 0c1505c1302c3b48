//! The command line, as clap types only. Names follow `docker compose` and
//! `docker compose build` so cbuild is a drop-in.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Build Compose services through BuildKit with minimal, content-addressed
/// contexts. `cbuild [OPTIONS] [SERVICE...]` is `cbuild build`.
#[derive(Debug, Parser)]
#[command(name = "cbuild", version, about)]
pub struct Cli {
    /// Options shared by every command.
    #[command(flatten)]
    pub global: GlobalArgs,
    /// The command (`build` when none is named; see [`with_default_command`]).
    #[command(subcommand)]
    pub command: Command,
}

/// Names of the commands, as typed.
const COMMANDS: &[&str] = &[
    "build", "config", "context", "doctor", "version", "help", "up", "status", "bench", "push",
    "why", "watch",
];

/// Options (of any command) that take a separate value, so that value is
/// not mistaken for the command name.
const TAKES_VALUE: &[&str] = &[
    "-f",
    "--transport",
    "--metadata-file",
    "--ssh",
    "--file",
    "-p",
    "--project-name",
    "--project-directory",
    "--env-file",
    "--profile",
    "--progress",
    "--builder",
    "--tlscacert",
    "--tlscert",
    "--tlskey",
    "--tlsservername",
    "--tlsdir",
    "--build-arg",
    "--parallel",
    "--format",
    "--explain",
    "--runs",
    "--platform",
    "--provenance",
    "--sbom",
];

/// `cbuild [OPTIONS] [SERVICE...]` means `cbuild build [OPTIONS]
/// [SERVICE...]`, as a drop-in for `docker compose build` wants: when the
/// first word that is not an option is not a command, insert `build`.
pub fn with_default_command(argv: Vec<std::ffi::OsString>) -> Vec<std::ffi::OsString> {
    let mut first_word = None;
    let mut i = 1;
    while i < argv.len() {
        let a = argv[i].to_string_lossy();
        if a == "--" {
            break;
        }
        if a.starts_with('-') {
            if TAKES_VALUE.contains(&a.as_ref()) {
                i += 1;
            }
            i += 1;
            continue;
        }
        first_word = Some(a.into_owned());
        break;
    }
    let help_or_version = argv
        .iter()
        .skip(1)
        .any(|a| matches!(a.to_str(), Some("-h" | "--help" | "-V" | "--version")));
    match first_word {
        Some(w) if COMMANDS.contains(&w.as_str()) => argv,
        None if help_or_version => argv,
        _ => {
            let mut out = argv;
            let at = out.len().min(1);
            out.insert(at, "build".into());
            out
        }
    }
}

/// Options `docker compose` takes before its command.
#[derive(Debug, Args, Clone, Default)]
pub struct GlobalArgs {
    /// Compose configuration files (repeatable; `-` reads standard input).
    #[arg(short = 'f', long = "file", global = true, value_name = "FILE")]
    pub files: Vec<PathBuf>,
    /// Project name.
    #[arg(short = 'p', long = "project-name", global = true, value_name = "NAME")]
    pub project_name: Option<String>,
    /// Alternate working directory (default: the first Compose file's directory).
    #[arg(long, global = true, value_name = "DIR")]
    pub project_directory: Option<PathBuf>,
    /// Alternate environment files (repeatable).
    #[arg(long = "env-file", global = true, value_name = "FILE")]
    pub env_files: Vec<PathBuf>,
    /// Profiles to enable (repeatable).
    #[arg(long = "profile", global = true, value_name = "PROFILE")]
    pub profiles: Vec<String>,
    /// Progress output: auto, tty, plain, json or quiet.
    #[arg(
        long,
        global = true,
        value_enum,
        default_value = "auto",
        env = "BUILDKIT_PROGRESS"
    )]
    pub progress: Progress,
    /// BuildKit daemon: a buildx builder or Docker context NAME,
    /// `unix:///path`, `tcp://host:port`, or `default` for the Docker
    /// engine (default: `$BUILDX_BUILDER`, else `$BUILDKIT_HOST`, else the
    /// Docker CLI's engine: `$DOCKER_HOST` or the current context).
    /// Given several times, `build` spreads the services over that pool of
    /// builders (so does a buildx builder of several nodes); other commands
    /// use the first.
    #[arg(long, global = true, value_name = "NAME|ADDRESS")]
    pub builder: Vec<String>,
    /// TLS for a `tcp://` builder (as buildctl): CA certificate.
    #[arg(long, global = true, value_name = "FILE")]
    pub tlscacert: Option<PathBuf>,
    /// TLS for a `tcp://` builder: client certificate.
    #[arg(long, global = true, value_name = "FILE")]
    pub tlscert: Option<PathBuf>,
    /// TLS for a `tcp://` builder: client key.
    #[arg(long, global = true, value_name = "FILE")]
    pub tlskey: Option<PathBuf>,
    /// TLS for a `tcp://` builder: the name its certificate must carry
    /// (default: the address's host).
    #[arg(long, global = true, value_name = "NAME")]
    pub tlsservername: Option<String>,
    /// TLS for a `tcp://` builder: a directory with `ca.pem`, `cert.pem`
    /// and `key.pem` (the flags above override its files).
    #[arg(long, global = true, value_name = "DIR")]
    pub tlsdir: Option<PathBuf>,
}

/// How progress is shown.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, ValueEnum)]
pub enum Progress {
    /// `tty` on a terminal, `plain` elsewhere.
    #[default]
    Auto,
    /// Live lines on a terminal.
    Tty,
    /// One line per event, prefixed with the service.
    Plain,
    /// One JSON object per event on stdout.
    Json,
    /// Only errors.
    Quiet,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Build services (the default command).
    Build(BuildArgs),
    /// Print the resolved Compose model.
    Config(ConfigArgs),
    /// Build what is stale, then `docker compose up --no-build` with the
    /// same project options and the remaining arguments (`-d`, …).
    Up(UpArgs),
    /// Build what is stale, start the services, then bring every change
    /// under their `develop.watch` paths into the running containers
    /// (sync, rebuild, restart, exec), verified. Ctrl-C stops watching and
    /// leaves the containers running.
    Watch(WatchArgs),
    /// Whether each service's image is up to date with the source, and
    /// whether its containers run it.
    Status(StatusArgs),
    /// Show what each service's build would send to BuildKit (no Docker needed).
    Context(ContextArgs),
    /// Explain which Dockerfile steps the next build re-runs and why (no solve), what the
    /// last build ran (`--last`), or where a Dockerfile wastes the cache (`--advise`).
    Why(WhyArgs),
    /// Measure context size, hashing, transfer and solve times per service
    /// (the user's files are only read; edits happen on a scratch copy).
    Bench(BenchArgs),
    /// Push the images of services with an `image:` (only up-to-date
    /// images: a stale one is refused, build it with `build --push`).
    Push(PushArgs),
    /// Check the engine and builder cbuild would use.
    #[command(alias = "version")]
    Doctor,
}

/// `docker compose build` options.
#[derive(Debug, Args, Clone, Default)]
pub struct BuildArgs {
    /// Services to build (default: every service with a `build:` section).
    #[arg(value_name = "SERVICE")]
    pub services: Vec<String>,
    /// Set build-time variables (`KEY=VALUE`, or `KEY` to take it from the environment).
    #[arg(long = "build-arg", value_name = "KEY[=VALUE]")]
    pub build_args: Vec<String>,
    /// Do not use cache when building the image.
    #[arg(long)]
    pub no_cache: bool,
    /// Always attempt to pull a newer version of the base images.
    #[arg(long)]
    pub pull: bool,
    /// Print nothing but errors.
    #[arg(short, long)]
    pub quiet: bool,
    /// Forward SSH agents to `RUN --mount=type=ssh` (`default` or
    /// `ID=/path/to/agent.sock`; repeatable).
    #[arg(long, value_name = "ID[=SOCKET]")]
    pub ssh: Vec<String>,
    /// Write each service's image name and digests to FILE as JSON (like
    /// `docker buildx build --metadata-file`).
    #[arg(long, value_name = "FILE")]
    pub metadata_file: Option<std::path::PathBuf>,
    /// Show what would be built, in which order, without building.
    #[arg(long)]
    pub dry_run: bool,
    /// Push the images of services with an `image:` (a service is up to
    /// date only when the registry holds what its build pushed).
    #[arg(long)]
    pub push: bool,
    /// Before building a service with an `image:`, look up its build
    /// record in that image's registry: an image built elsewhere from
    /// exactly these inputs is pulled instead of built (implied by
    /// `--push`, which needs no pull).
    #[arg(long, env = "CBUILD_REMOTE_RECORDS", value_parser = clap::builder::BoolishValueParser::new())]
    pub remote_records: bool,
    /// Also build the services the named ones depend on (always done:
    /// a build needs the images it starts from; accepted for compatibility).
    #[arg(long)]
    pub with_dependencies: bool,
    /// How build contexts travel: `filesync` (incremental), `tar` or
    /// `tar.gz` (one archive per build, e.g. for remote builders).
    #[arg(long, value_enum, default_value = "filesync", env = "CBUILD_TRANSPORT")]
    pub transport: TransportArg,
    /// How many services build at once (default: all).
    #[arg(long, env = "COMPOSE_PARALLEL_LIMIT", value_name = "N")]
    pub parallel: Option<usize>,
    /// Build every named service for these platforms instead of its
    /// `platforms:` (`linux/amd64,linux/386`; repeatable; as buildx's
    /// `--platform`: compose has no such flag).
    #[arg(long = "platform", value_name = "OS/ARCH[,...]")]
    pub platforms: Vec<String>,
    /// Provenance attestation: `true`, `false` or buildx's fields
    /// (`mode=max`); replaces each service's `provenance` key.
    #[arg(long, value_name = "VALUE")]
    pub provenance: Option<String>,
    /// SBOM attestation: `true`, `false` or buildx's fields
    /// (`generator=IMAGE`); replaces each service's `sbom` key.
    #[arg(long, value_name = "VALUE")]
    pub sbom: Option<String>,
    /// With several builders: the registry (and repository prefix) through
    /// which a service's image reaches a dependent built on another node;
    /// replaces `x-cbuild: pool_registry`.
    #[arg(long, value_name = "HOST[:PORT][/PREFIX]")]
    pub pool_registry: Option<String>,
}

/// `docker compose push` options.
#[derive(Debug, Args, Clone, Default)]
pub struct PushArgs {
    /// Services to push (default: every service with `build:` and `image:`).
    #[arg(value_name = "SERVICE")]
    pub services: Vec<String>,
    /// Go on with the other services when one fails (exit 0).
    #[arg(long)]
    pub ignore_push_failures: bool,
    /// Print nothing but errors.
    #[arg(short, long)]
    pub quiet: bool,
}

/// `cbuild up` arguments.
#[derive(Debug, Args, Clone, Default)]
pub struct UpArgs {
    /// Build options for the build step.
    #[command(flatten)]
    pub build: UpBuildArgs,
    /// Services and `docker compose up` flags, passed on as they are.
    #[arg(
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "ARGS"
    )]
    pub rest: Vec<String>,
}

/// The build options `cbuild up` understands itself.
#[derive(Debug, Args, Clone, Default)]
pub struct UpBuildArgs {
    /// Set build-time variables for the build step.
    #[arg(long = "build-arg", value_name = "KEY[=VALUE]")]
    pub build_args: Vec<String>,
    /// Build without cache before starting.
    #[arg(long)]
    pub no_cache: bool,
    /// Pull an image the registry holds a build record of instead of
    /// building it (as `build --remote-records`).
    #[arg(long, env = "CBUILD_REMOTE_RECORDS", value_parser = clap::builder::BoolishValueParser::new())]
    pub remote_records: bool,
    /// Start detached, then watch the services' `develop.watch` paths
    /// (as `cbuild watch`).
    #[arg(long)]
    pub watch: bool,
}

/// `cbuild watch` options (as `docker compose watch`).
#[derive(Debug, Args, Clone, Default)]
pub struct WatchArgs {
    /// Services to watch (default: every service with `develop.watch`).
    #[arg(value_name = "SERVICE")]
    pub services: Vec<String>,
    /// Do not build and start the services before watching.
    #[arg(long)]
    pub no_up: bool,
    /// Set build-time variables for the builds.
    #[arg(long = "build-arg", value_name = "KEY[=VALUE]")]
    pub build_args: Vec<String>,
}

/// `cbuild status` options.
#[derive(Debug, Args, Clone, Default)]
pub struct StatusArgs {
    /// Services (default: every service with a `build:` section).
    #[arg(value_name = "SERVICE")]
    pub services: Vec<String>,
    /// Output format.
    #[arg(long, value_enum, default_value = "text")]
    pub format: StatusFormat,
    /// Exit with status 1 when anything is stale, not built, or running an
    /// older image.
    #[arg(long)]
    pub check: bool,
    /// Judge against a build for these platforms, as `build --platform`
    /// builds them (the platforms are one of a build's inputs).
    #[arg(long = "platform", value_name = "OS/ARCH[,...]")]
    pub platforms: Vec<String>,
}

/// `cbuild why` options.
#[derive(Debug, Args, Clone, Default)]
pub struct WhyArgs {
    /// Services (default: every service with a `build:` section).
    #[arg(value_name = "SERVICE")]
    pub services: Vec<String>,
    /// Output format.
    #[arg(long, value_enum, default_value = "text")]
    pub format: StatusFormat,
    /// Show what the last build ran and took from the cache, per step, with its time.
    #[arg(long, conflicts_with = "advise")]
    pub last: bool,
    /// Point at the Dockerfile lines that waste the cache (never changes a file).
    #[arg(long)]
    pub advise: bool,
    /// The last builds of each service (up to 50): when, how long, steps run
    /// and cached, context bytes sent, and the files that triggered them.
    #[arg(long, conflicts_with_all = ["last", "advise"])]
    pub history: bool,
    /// Set build-time variables as the next build would (`KEY=VALUE`, or `KEY`).
    #[arg(long = "build-arg", value_name = "KEY[=VALUE]")]
    pub build_args: Vec<String>,
}

/// `cbuild bench` options.
#[derive(Debug, Args, Clone)]
pub struct BenchArgs {
    /// Services to measure (default: every service with a `build:` section).
    #[arg(value_name = "SERVICE")]
    pub services: Vec<String>,
    /// Runs per measurement; the median is reported.
    #[arg(long, default_value_t = 3, value_name = "N")]
    pub runs: usize,
    /// Output format.
    #[arg(long, value_enum, default_value = "text")]
    pub format: StatusFormat,
    /// Set build-time variables (`KEY=VALUE`, or `KEY` to take it from the environment).
    #[arg(long = "build-arg", value_name = "KEY[=VALUE]")]
    pub build_args: Vec<String>,
    /// Do not compare with `docker buildx build`.
    #[arg(long)]
    pub no_docker: bool,
}

/// `status` output formats.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, ValueEnum)]
pub enum StatusFormat {
    /// A table.
    #[default]
    Text,
    /// JSON.
    Json,
}

/// `--transport` values.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, ValueEnum)]
pub enum TransportArg {
    /// FileSync: only what changed is sent.
    #[default]
    Filesync,
    /// A tar stream.
    Tar,
    /// A gzip-compressed tar stream.
    #[value(name = "tar.gz")]
    TarGz,
}

/// `docker compose config` options.
#[derive(Debug, Args, Clone, Default)]
pub struct ConfigArgs {
    /// Output format.
    #[arg(long, value_enum, default_value = "yaml")]
    pub format: ConfigFormat,
    /// Print the service names, one per line.
    #[arg(long)]
    pub services: bool,
    /// Print the image names, one per line.
    #[arg(long)]
    pub images: bool,
    /// Print the profile names, one per line.
    #[arg(long = "profiles", id = "list_profiles")]
    pub list_profiles: bool,
}

/// `cbuild context` options.
#[derive(Debug, Args, Clone, Default)]
pub struct ContextArgs {
    /// Services to inspect (default: every service with a `build:` section).
    #[arg(value_name = "SERVICE")]
    pub services: Vec<String>,
    /// Output format.
    #[arg(long, value_enum, default_value = "text")]
    pub format: ContextFormat,
    /// Say whether PATH (relative to the context, or absolute) is sent, and why.
    #[arg(long, value_name = "PATH")]
    pub explain: Option<String>,
    /// Set build-time variables (`KEY=VALUE`, or `KEY` to take it from the environment).
    #[arg(long = "build-arg", value_name = "KEY[=VALUE]")]
    pub build_args: Vec<String>,
}

/// `context` output formats.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, ValueEnum)]
pub enum ContextFormat {
    /// Human-readable.
    #[default]
    Text,
    /// One JSON document on stdout.
    Json,
}

/// `config` output formats.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, ValueEnum)]
pub enum ConfigFormat {
    /// YAML.
    #[default]
    Yaml,
    /// JSON.
    Json,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(words: &[&str]) -> Cli {
        let argv = std::iter::once("cbuild")
            .chain(words.iter().copied())
            .map(Into::into)
            .collect();
        Cli::try_parse_from(with_default_command(argv)).unwrap()
    }

    #[test]
    fn build_is_the_default_command() {
        let c = parse(&["-p", "x", "--no-cache", "api", "web"]);
        let Command::Build(b) = c.command else {
            panic!()
        };
        assert!(b.no_cache);
        assert_eq!(b.services, ["api", "web"]);
        assert_eq!(c.global.project_name.as_deref(), Some("x"));
        let c = parse(&["-f", "a.yml", "--progress", "plain", "build", "api"]);
        let Command::Build(b) = c.command else {
            panic!()
        };
        assert_eq!(b.services, ["api"]);
        assert_eq!(c.global.progress, Progress::Plain);
        assert!(matches!(parse(&[]).command, Command::Build(_)));
        assert!(matches!(
            parse(&["-p", "x", "doctor"]).command,
            Command::Doctor
        ));
        assert!(matches!(
            parse(&["config", "--services"]).command,
            Command::Config(_)
        ));
        let c = parse(&[
            "-f",
            "c.yml",
            "context",
            "--format",
            "json",
            "--explain",
            "a/b",
            "web",
        ]);
        let Command::Context(x) = c.command else {
            panic!()
        };
        assert_eq!(x.services, ["web"]);
        assert_eq!(x.format, ContextFormat::Json);
        assert_eq!(x.explain.as_deref(), Some("a/b"));
    }

    #[test]
    fn remote_records_is_a_flag_of_build_and_up() {
        let Command::Build(b) = parse(&["--remote-records", "api"]).command else {
            panic!()
        };
        assert!(b.remote_records);
        assert_eq!(b.services, ["api"]);
        let Command::Up(u) = parse(&["up", "--remote-records", "-d"]).command else {
            panic!()
        };
        assert!(u.build.remote_records);
        assert_eq!(u.rest, ["-d"]);
    }

    #[test]
    fn platform_and_attestation_flags_take_values() {
        let c = parse(&[
            "--platform",
            "linux/amd64,linux/386",
            "--provenance",
            "mode=max",
            "--sbom",
            "false",
            "api",
        ]);
        let Command::Build(b) = c.command else {
            panic!()
        };
        assert_eq!(b.platforms, ["linux/amd64,linux/386"]);
        assert_eq!(b.provenance.as_deref(), Some("mode=max"));
        assert_eq!(b.sbom.as_deref(), Some("false"));
        assert_eq!(b.services, ["api"]);
    }
}
