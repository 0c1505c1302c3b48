//! `cbuild build [SERVICE...]`.

use crate::cli::args::{BuildArgs, GlobalArgs, TransportArg};
use crate::cli::{report_error, settings, ExitStatus};
use crate::orchestrate::{self, BuildOptions, Transport};
use crate::ui::{self, Printer};

pub async fn run(global: &GlobalArgs, args: &BuildArgs, printer: &Printer) -> ExitStatus {
    let env = settings::environment();
    // Services named on the command line enable their profiles, as in compose.
    let load = settings::load_options(global, &env).and_then(|mut o| {
        o.services = args.services.clone();
        Ok(crate::compose::load(&o)?)
    });
    let project = match load {
        Ok(p) => {
            crate::cli::report_warnings(printer, &p.warnings);
            p
        }
        Err(e) => {
            report_error(printer, &e, None);
            return ExitStatus::Error;
        }
    };
    let opts = options(args, &env);
    let builds = match orchestrate::plan(&project, &opts) {
        Ok(b) => b,
        Err(e) => {
            report_error(printer, &e.into(), None);
            return ExitStatus::Error;
        }
    };
    if builds.is_empty() {
        printer.note(&format!(
            "no service of project `{}` has a `build:` section; nothing to build",
            project.name
        ));
        return ExitStatus::Success;
    }
    if args.dry_run {
        ui::summary::dry_run(printer, &builds);
        return ExitStatus::Success;
    }
    // Several builders: a pool (see `orchestrate::pool`).
    let registry = match pool_registry(&project, args) {
        Ok(r) => r,
        Err(e) => {
            report_error(printer, &e, None);
            return ExitStatus::Error;
        }
    };
    let (values, origin) = match global.builder.is_empty() {
        true => (
            x_cbuild_builders(&project),
            "`x-cbuild: builders` in the Compose file",
        ),
        false => (Ok(global.builder.clone()), "--builder"),
    };
    let values = match values {
        Ok(v) => v,
        Err(e) => {
            report_error(printer, &e, Some("write `x-cbuild: {builders: [NAME|ADDRESS, …]}`: buildx builder or Docker context names, or addresses as `--builder` takes them"));
            return ExitStatus::Error;
        }
    };
    let pool = match settings::builders(global, &values, origin, &env) {
        Ok(p) => p,
        Err(e) => {
            report_error(printer, &e, None);
            return ExitStatus::Error;
        }
    };
    if pool.len() > 1 {
        return run_pool(pool, builds, registry, &opts, args, &env, printer).await;
    }
    // One builder named by `x-cbuild: builders`: as if by `--builder`.
    let mut named = global.clone();
    named.builder = values;
    let client = match super::connect(&named, &env, printer).await {
        Ok(c) => c,
        Err(status) => return status,
    };
    // The engine whose image store receives the images and tells whether
    // a build can be skipped: the builder's own when it is a Docker engine
    // (a named builder may be another one than DOCKER_HOST's), else the
    // Docker CLI's, where tarball exports are loaded.
    let (host, tls) = settings::engine_for(client.address(), &env);
    let target = match orchestrate::export::connect_target(&client, &host, tls.as_ref()).await {
        Ok(t) => t,
        // Images that only go to a registry need no engine.
        Err(_) if args.push && builds.iter().all(|b| b.push) => orchestrate::export::Target {
            choice: orchestrate::export::decide(false, None, &client.workers(), None),
            engine: None,
            engine_version: None,
            engine_problem: None,
        },
        Err(e) => {
            let hint = e.hint();
            report_error(printer, &e.into(), Some(&hint));
            return ExitStatus::Failure;
        }
    };
    if builds.iter().any(|b| b.push) {
        let is_engine = client.address().is_docker();
        let builder = client.address().to_string();
        if let Err(e) = orchestrate::export::can_push(is_engine, &target.choice, &builder) {
            let hint = e.hint();
            report_error(printer, &e.into(), Some(&hint));
            return ExitStatus::Failure;
        }
    }
    let mut builds = builds;
    orchestrate::export::retarget(&mut builds, target.choice.exporter);
    orchestrate::export::retarget_push(&mut builds, &target.choice);
    let workers = client.workers();
    if let Err(e) = orchestrate::export::check(
        &builds,
        &target.choice,
        &client.address().to_string(),
        &workers,
    ) {
        let hint = e.hint.clone();
        report_error(printer, &e.into(), Some(&hint));
        return ExitStatus::Failure;
    }
    let engine = target.engine;
    let (trigger, shutdown) = orchestrate::Shutdown::new();
    let ctrl_c = tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            trigger.request();
            // A second Ctrl-C does not wait for the builds to wind down.
            if tokio::signal::ctrl_c().await.is_ok() {
                std::process::exit(130);
            }
        }
    });
    let results = orchestrate::run(
        &client,
        engine,
        builds,
        opts.parallel,
        printer.reporter(),
        shutdown.clone(),
    )
    .await;
    ctrl_c.abort();
    finish(results, &shutdown, args, printer)
}

/// `x-cbuild: builders:` of the Compose file: the pool when no
/// `--builder` is given.
pub(super) fn x_cbuild_builders(project: &crate::compose::Project) -> anyhow::Result<Vec<String>> {
    let Some(x) = project.config.get("x-cbuild") else {
        return Ok(Vec::new());
    };
    let Some(list) = x.get("builders") else {
        return Ok(Vec::new());
    };
    let files: Vec<String> = project
        .files
        .iter()
        .map(|f| format!("`{}`", f.display()))
        .collect();
    let files = files.join(", ");
    let items = list.as_array().ok_or_else(|| {
        anyhow::anyhow!("{files}: `x-cbuild.builders` must be a list of builder names or addresses")
    })?;
    items
        .iter()
        .enumerate()
        .map(|(i, v)| match v.as_str() {
            Some(s) if !s.is_empty() => Ok(s.to_string()),
            _ => Err(anyhow::anyhow!(
                "{files}: `x-cbuild.builders[{i}]` must be a builder name or address (a string), not `{v}`"
            )),
        })
        .collect()
}

/// The pool registry: `--pool-registry`, else `x-cbuild: pool_registry:`
/// of the Compose file (see `orchestrate::pool::PoolRegistry`).
fn pool_registry(
    project: &crate::compose::Project,
    args: &BuildArgs,
) -> anyhow::Result<Option<orchestrate::pool::PoolRegistry>> {
    use orchestrate::pool::PoolRegistry;
    if let Some(v) = &args.pool_registry {
        return PoolRegistry::parse(v)
            .map(Some)
            .map_err(|e| anyhow::anyhow!("`--pool-registry`: {e}"));
    }
    let Some(v) = project
        .config
        .get("x-cbuild")
        .and_then(|x| x.get("pool_registry"))
    else {
        return Ok(None);
    };
    let files: Vec<String> = project
        .files
        .iter()
        .map(|f| format!("`{}`", f.display()))
        .collect();
    let files = files.join(", ");
    match v.as_str() {
        Some(s) => PoolRegistry::parse(s)
            .map(Some)
            .map_err(|e| anyhow::anyhow!("{files}: `x-cbuild.pool_registry`: {e}")),
        None => Err(anyhow::anyhow!(
            "{files}: `x-cbuild.pool_registry` must be a registry as `HOST[:PORT][/PREFIX]` (a string), not `{v}`"
        )),
    }
}

/// Builds over a pool of builders: connects each (an unreachable one is
/// left out with a warning), picks each one's exporter, and runs.
async fn run_pool(
    pool: Vec<crate::cli::builders::Resolved>,
    builds: Vec<orchestrate::ServiceBuild>,
    registry: Option<orchestrate::pool::PoolRegistry>,
    opts: &BuildOptions,
    args: &BuildArgs,
    env: &std::collections::HashMap<String, String>,
    printer: &Printer,
) -> ExitStatus {
    use orchestrate::pool::Node;
    let pushing = builds.iter().any(|b| b.push);
    let home = settings::docker_host(env);
    let mut nodes: Vec<Node> = Vec::new();
    let mut first_problem = None;
    for r in pool {
        let name = orchestrate::pool::node_name(&r.address);
        let client = match crate::buildkit::Client::connect(r.address).await {
            Ok(c) => c,
            Err(e) => {
                printer.warning(&format!(
                    "the builder `{name}` ({}) cannot be reached, so it is left out of the pool: {e}",
                    r.source
                ));
                first_problem.get_or_insert((anyhow::Error::from(e), None));
                continue;
            }
        };
        let (host, tls) = settings::engine_for(client.address(), env);
        let is_engine = client.address().is_docker();
        // An engine node stores its images in its own engine: without
        // `--push` they would stay there, out of the reach of DOCKER_HOST.
        if is_engine && host != home && !(pushing && builds.iter().all(|b| b.push)) {
            printer.warning(&format!(
                "the builder `{name}` is the BuildKit of another Docker engine than DOCKER_HOST's (`{home}`): the images it built would stay in that engine, so it is left out of the pool (with `--push` and an `image:` per service it takes part)"
            ));
            continue;
        }
        let target = match orchestrate::export::connect_target(&client, &host, tls.as_ref()).await {
            Ok(t) => t,
            Err(_) if pushing && builds.iter().all(|b| b.push) => orchestrate::export::Target {
                choice: orchestrate::export::decide(false, None, &client.workers(), None),
                engine: None,
                engine_version: None,
                engine_problem: None,
            },
            Err(e) => {
                let hint = e.hint();
                printer.warning(&format!(
                    "the builder `{name}` is left out of the pool: {}",
                    crate::ui::printer::error_text(&e, Some(&hint))
                ));
                continue;
            }
        };
        // A graph-driver engine's BuildKit reached directly stores its
        // images in that engine, which cbuild does not know: they would
        // never come home.
        if !is_engine && target.choice.exporter == orchestrate::export::Exporter::Moby {
            printer.warning(&format!(
                "the builder `{name}` is left out of the pool: it is the BuildKit of a Docker engine with the graph-driver image store, reached directly, so its images would stay in that engine; name the engine itself (a Docker context, or DOCKER_HOST's engine as `default`) with `--push`, or use a standalone buildkitd"
            ));
            continue;
        }
        if pushing {
            if let Err(e) = orchestrate::export::can_push(is_engine, &target.choice, &name) {
                printer.warning(&format!(
                    "the builder `{name}` is left out of the pool: {}",
                    crate::ui::printer::error_text(&e, Some(&e.hint()))
                ));
                continue;
            }
        }
        nodes.push(Node {
            name,
            client,
            engine: target.engine,
            choice: Some(target.choice),
        });
    }
    if nodes.is_empty() {
        let (e, hint) = first_problem.unwrap_or_else(|| {
            (
                anyhow::anyhow!("no builder of the pool can build here"),
                None,
            )
        });
        report_error(
            printer,
            &e.context("no builder of the pool is usable"),
            hint,
        );
        return ExitStatus::Failure;
    }
    let pooled = match orchestrate::pool::prepare(builds, &nodes) {
        Ok(p) => p,
        Err(e) => {
            let hint = e.hint.clone();
            report_error(printer, &e.into(), Some(&hint));
            return ExitStatus::Failure;
        }
    };
    let (trigger, shutdown) = orchestrate::Shutdown::new();
    let ctrl_c = tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            trigger.request();
            if tokio::signal::ctrl_c().await.is_ok() {
                std::process::exit(130);
            }
        }
    });
    let results = orchestrate::run_pool(
        nodes,
        pooled,
        registry,
        opts.parallel,
        printer.reporter(),
        shutdown.clone(),
    )
    .await;
    ctrl_c.abort();
    finish(results, &shutdown, args, printer)
}

/// What every build ends with: the metadata file, the summary, the status.
fn finish(
    results: Vec<(String, orchestrate::ServiceOutcome)>,
    shutdown: &orchestrate::Shutdown,
    args: &BuildArgs,
    printer: &Printer,
) -> ExitStatus {
    if shutdown.is_requested() {
        printer.always("cancelled: the running builds were stopped and tagged nothing");
        return ExitStatus::Cancelled;
    }
    if let Some(path) = &args.metadata_file {
        let text = serde_json::to_string_pretty(&orchestrate::event::metadata(&results))
            .unwrap_or_default();
        if let Err(e) = fs_err::write(path, text) {
            report_error(
                printer,
                &anyhow::Error::from(e).context("cannot write the metadata file"),
                None,
            );
            return ExitStatus::Error;
        }
    }
    ui::summary::print(printer, &results);
    if results.iter().any(|(_, o)| o.error.is_some()) {
        ExitStatus::Failure
    } else {
        ExitStatus::Success
    }
}

/// The build options `args` and the environment give.
pub(super) fn options(
    args: &BuildArgs,
    env: &std::collections::HashMap<String, String>,
) -> BuildOptions {
    BuildOptions {
        services: args.services.clone(),
        no_cache: args.no_cache,
        pull: args.pull,
        build_args: settings::build_args(args),
        environment: env.clone(),
        parallel: args.parallel.unwrap_or(0),
        cache_dir: Some(crate::context::cache::default_cache_dir()),
        transport: match args.transport {
            TransportArg::Filesync => Transport::FileSync,
            TransportArg::Tar => Transport::Tar { gzip: false },
            TransportArg::TarGz => Transport::Tar { gzip: true },
        },
        ssh: args.ssh.clone(),
        push: args.push,
        remote_records: args.remote_records,
        session_over_control: env.get("CBUILD_SESSION_TRANSPORT").map(String::as_str)
            == Some("grpc"),
        platforms: args.platforms.clone(),
        provenance: args.provenance.clone(),
        sbom: args.sbom.clone(),
    }
}
