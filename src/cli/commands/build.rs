//! `cbuild build [SERVICE...]`.

use std::sync::Arc;

use crate::buildkit::Client;
use crate::cli::args::{BuildArgs, GlobalArgs, Progress, TransportArg};
use crate::cli::{report_error, settings, ExitStatus};
use crate::orchestrate::{self, BuildOptions, Reporter, Transport};
use crate::ui::{self, json::JsonReporter, plain::PlainReporter};

pub async fn run(global: &GlobalArgs, args: &BuildArgs) -> ExitStatus {
    let env = settings::environment();
    // Services named on the command line enable their profiles, as in compose.
    let load = settings::load_options(global, &env).and_then(|mut o| {
        o.services = args.services.clone();
        Ok(crate::compose::load(&o)?)
    });
    let project = match load {
        Ok(p) => {
            crate::cli::report_warnings(&p.warnings);
            p
        }
        Err(e) => {
            report_error(&e, None);
            return ExitStatus::Error;
        }
    };
    let opts = BuildOptions {
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
        session_over_control: env.get("CBUILD_SESSION_TRANSPORT").map(String::as_str)
            == Some("grpc"),
    };
    let builds = match orchestrate::plan(&project, &opts) {
        Ok(b) => b,
        Err(e) => {
            report_error(&e.into(), None);
            return ExitStatus::Error;
        }
    };
    if builds.is_empty() {
        eprintln!(
            "no service of project `{}` has a `build:` section; nothing to build",
            project.name
        );
        return ExitStatus::Success;
    }
    if args.dry_run {
        for b in &builds {
            let mut line = format!("would build `{}` as `{}`", b.service, b.image);
            if !b.deps.is_empty() {
                line.push_str(&format!(" after {}", b.deps.join(", ")));
            }
            if let Some(other) = &b.same_as {
                line = format!(
                    "would reuse `{other}`'s build for `{}` (same image `{}`)",
                    b.service, b.image
                );
            }
            println!("{line}");
        }
        return ExitStatus::Success;
    }
    let address = match settings::address(global, &env) {
        Ok(a) => a,
        Err(e) => {
            report_error(&e, None);
            return ExitStatus::Error;
        }
    };
    let client = match Client::connect(address).await {
        Ok(c) => c,
        Err(e) => {
            let hint = e.hint();
            report_error(&e.into(), hint.as_deref());
            return ExitStatus::Failure;
        }
    };
    // The engine whose image store receives the images and tells whether
    // a build can be skipped; the builder decides how images get there.
    let target = match orchestrate::export::connect_target(
        &client,
        &settings::docker_host(&env),
        settings::docker_tls(&env).as_ref(),
    )
    .await
    {
        Ok(t) => t,
        Err(e) => {
            let hint = e.hint();
            report_error(&e.into(), Some(&hint));
            return ExitStatus::Failure;
        }
    };
    let mut builds = builds;
    orchestrate::export::retarget(&mut builds, target.choice.exporter);
    let engine = target.engine;
    let progress = settings::progress(global, args);
    let reporter: Arc<dyn Reporter> = match progress {
        Progress::Json => Arc::new(JsonReporter),
        Progress::Quiet => Arc::new(PlainReporter::new(true)),
        Progress::Tty => Arc::new(crate::ui::tty::TtyReporter::new()),
        _ => Arc::new(PlainReporter::new(false)),
    };
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
        reporter,
        shutdown.clone(),
    )
    .await;
    ctrl_c.abort();
    if shutdown.is_requested() {
        eprintln!("cancelled: the running builds were stopped and tagged nothing");
        return ExitStatus::Cancelled;
    }
    if let Some(path) = &args.metadata_file {
        let meta: serde_json::Map<String, serde_json::Value> = results
            .iter()
            .filter(|(_, o)| o.error.is_none())
            .map(|(s, o)| {
                let mut m: serde_json::Map<String, serde_json::Value> = o
                    .exporter_response
                    .iter()
                    .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
                    .collect();
                m.entry("image.name")
                    .or_insert_with(|| o.image.clone().into());
                if let Some(id) = &o.image_id {
                    m.entry("containerimage.config.digest")
                        .or_insert_with(|| id.clone().into());
                }
                m.insert("cbuild.up_to_date".into(), o.up_to_date.into());
                (s.clone(), serde_json::Value::Object(m))
            })
            .collect();
        let text = serde_json::to_string_pretty(&meta).unwrap_or_default();
        if let Err(e) = std::fs::write(path, text) {
            report_error(
                &anyhow::Error::from(e).context(format!(
                    "cannot write the metadata file `{}`",
                    path.display()
                )),
                None,
            );
            return ExitStatus::Error;
        }
    }
    let failed: Vec<&str> = results
        .iter()
        .filter(|(_, o)| o.error.is_some())
        .map(|(s, _)| s.as_str())
        .collect();
    if progress != Progress::Json && progress != Progress::Quiet {
        eprintln!();
        for (service, o) in &results {
            match &o.image_id {
                Some(id) if o.up_to_date => eprintln!(
                    " {service:<20} up to date  {}  {:<12}",
                    o.image,
                    ui::plain::short_id(id)
                ),
                Some(id) => eprintln!(
                    " {service:<20} built    {}  {:<12}  {:>8}  {} steps run, {} cached  context {} sent",
                    o.image,
                    ui::plain::short_id(id),
                    ui::duration(o.elapsed),
                    o.steps_run,
                    o.steps_cached,
                    ui::bytes(o.transfer.context_bytes_sent)
                ),
                None => eprintln!(
                    " {service:<20} FAILED   {}  {:>8}",
                    o.image,
                    ui::duration(o.elapsed)
                ),
            }
        }
    }
    if failed.is_empty() {
        ExitStatus::Success
    } else {
        eprintln!(
            "error: {} of {} services failed: {}",
            failed.len(),
            results.len(),
            failed.join(", ")
        );
        ExitStatus::Failure
    }
}
