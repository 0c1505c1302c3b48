//! The command line, as clap types only. Names follow `docker compose` and
//! `docker compose build` so cbuild is a drop-in.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Build Compose services through BuildKit with minimal, content-addressed
/// contexts. `cbuild [OPTIONS] [SERVICE...]` is `cbuild build`.
#[derive(Debug, Parser)]
#[command(
    name = "cbuild",
    version,
    about,
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
    /// Options shared by every command.
    #[command(flatten)]
    pub global: GlobalArgs,
    /// The command; none means `build`.
    #[command(subcommand)]
    pub command: Option<Command>,
    /// `build` options when no command is named.
    #[command(flatten)]
    pub build: BuildArgs,
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
    /// BuildKit daemon: `unix:///path`, `tcp://host:port`, or `default` for
    /// the Docker engine (default: `$BUILDKIT_HOST`, else `$DOCKER_HOST`).
    #[arg(long, global = true, value_name = "ADDRESS")]
    pub builder: Option<String>,
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
    /// How many services build at once (default: all).
    #[arg(long, env = "COMPOSE_PARALLEL_LIMIT", value_name = "N")]
    pub parallel: Option<usize>,
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
