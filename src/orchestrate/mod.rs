//! The operations layer: turns a Compose project into built images. Commands
//! in `cli` are thin wrappers around the functions here.

pub mod doctor;
pub mod event;
pub mod export;
pub mod fresh;
pub mod inspect;
mod localcache;
pub mod plan;
pub mod platform;
pub mod pool;
pub mod push;
pub mod records;
pub mod shutdown;
pub mod status;
pub mod up;
pub mod watch;
pub mod why;

use std::sync::Arc;
use std::time::Instant;

use std::collections::{BTreeMap, HashMap};

use tokio::sync::{mpsc, Semaphore};
use tokio::task::JoinSet;

use crate::buildkit::{BuildkitError, Client, StatusUpdate};
use crate::engine::Engine;
pub use event::{BuildEvent, HandOff, Reporter, ServiceOutcome};
pub use inspect::{inspect, ContextReport, InspectError, InspectOptions};
pub use plan::{plan, BuildOptions, PlanError, ServiceBuild, Transport};
pub use shutdown::{Shutdown, ShutdownTrigger};

/// Builds every planned service, at most `parallel` at once (0 = all), each
/// as soon as the services it depends on are built, and returns each
/// service's outcome in plan order. One failure does not stop the others
/// (only the services that need its image).
///
/// When `shutdown` is requested, running solves are cancelled (BuildKit
/// stops them and tags nothing), and services not started yet are not
/// started; each such service ends with a "cancelled" outcome, after its
/// hash caches are saved (its content clock stays valid: stamps are
/// content-derived, see `context::clock`). Dropping the returned future also
/// cancels the builds, but skips that bookkeeping.
pub async fn run(
    client: &Client,
    engine: Option<Engine>,
    builds: Vec<ServiceBuild>,
    parallel: usize,
    reporter: Arc<dyn Reporter>,
    shutdown: Shutdown,
) -> Vec<(String, ServiceOutcome)> {
    let node = pool::Node {
        name: pool::node_name(client.address()),
        client: client.clone(),
        engine,
        choice: None,
    };
    let builds = builds
        .into_iter()
        .map(|b| pool::Pooled {
            on: vec![Some(b.clone())],
            build: b,
        })
        .collect();
    run_pool(vec![node], builds, None, parallel, reporter, shutdown).await
}

/// What a service task tells the services that wait for it: its outcome,
/// and the node that built it (or found it up to date).
type Done = Option<(ServiceOutcome, Option<usize>)>;

/// The pool-registry hand-offs of one run: each dependency's image is
/// pushed once, whatever number of dependents need it.
type HandOffCells = HashMap<String, tokio::sync::OnceCell<Result<HandOff, (String, String)>>>;

/// [`run`] over a pool of builders (see [`pool`]): each service goes to
/// one node as it starts, and once more to another node when its node is
/// lost during the build. With a pool `registry`, a dependency's image is
/// handed to a dependent on another node through it.
pub async fn run_pool(
    nodes: Vec<pool::Node>,
    builds: Vec<pool::Pooled>,
    registry: Option<pool::PoolRegistry>,
    parallel: usize,
    reporter: Arc<dyn Reporter>,
    shutdown: Shutdown,
) -> Vec<(String, ServiceOutcome)> {
    let limit = Arc::new(Semaphore::new(if parallel == 0 {
        builds.len().max(1)
    } else {
        parallel
    }));
    let order: Vec<String> = builds.iter().map(|p| p.build.service.clone()).collect();
    let images: HashMap<String, String> = builds
        .iter()
        .map(|p| (p.build.service.clone(), p.build.image.clone()))
        .collect();
    let mut senders = HashMap::new();
    let mut receivers = HashMap::new();
    for p in &builds {
        let (tx, rx) = tokio::sync::watch::channel::<Done>(None);
        senders.insert(p.build.service.clone(), tx);
        receivers.insert(p.build.service.clone(), rx);
    }
    // Pushes, hand-offs and build record lookups all ask registries.
    let asks_registries = builds
        .iter()
        .any(|p| p.build.push || p.build.remote_records);
    let mut pushers = Vec::new();
    for n in &nodes {
        pushers.push(match registry.is_some() || asks_registries {
            true => Some(push::Pusher::for_engine(n.engine.as_ref()).await),
            false => None,
        });
    }
    let pushers = Arc::new(pushers);
    // Each service as each node builds it, for the hand-offs of its image.
    let plans: Arc<HashMap<String, Vec<Option<ServiceBuild>>>> = Arc::new(
        builds
            .iter()
            .map(|p| (p.build.service.clone(), p.on.clone()))
            .collect(),
    );
    let cells: Arc<HandOffCells> = Arc::new(
        builds
            .iter()
            .map(|p| (p.build.service.clone(), Default::default()))
            .collect(),
    );
    let scheduler = Arc::new(pool::Scheduler::new(nodes, &builds, registry));
    let mut set = JoinSet::new();
    for pooled in builds {
        let b = pooled.build;
        let on = pooled.on;
        let pushers = pushers.clone();
        let plans = plans.clone();
        let cells = cells.clone();
        let scheduler = scheduler.clone();
        let reporter = reporter.clone();
        let limit = limit.clone();
        let mut shutdown = shutdown.clone();
        let done = senders.remove(&b.service);
        let waits: Vec<(String, tokio::sync::watch::Receiver<Done>)> = b
            .deps
            .iter()
            .chain(b.same_as.iter())
            .filter_map(|d| receivers.get(d).map(|r| (d.clone(), r.clone())))
            .collect();
        set.spawn(async move {
            let started = Instant::now();
            let mut failed_dep = None;
            let mut same = None;
            // The dependencies, with the node each was built on.
            let mut built: Vec<(String, usize, ServiceOutcome)> = Vec::new();
            for (name, mut rx) in waits {
                let outcome = rx
                    .wait_for(Option::is_some)
                    .await
                    .ok()
                    .and_then(|o| o.clone());
                match outcome {
                    Some((o, node)) if o.error.is_none() => {
                        if b.same_as.as_deref() == Some(name.as_str()) {
                            same = Some((o, node));
                        } else if let Some(n) = node {
                            built.push((name, n, o));
                        }
                    }
                    _ => failed_dep = Some(name),
                }
            }
            let mut ran_on = None;
            let outcome = if shutdown.is_requested() {
                cancelled(&b, started, reporter.as_ref())
            } else if let Some(dep) = failed_dep {
                let o = ServiceOutcome {
                    error: Some(format!("not built: `{dep}`, whose image it needs, failed")),
                    ..ServiceOutcome::without_build(b.image.clone(), started.elapsed())
                };
                reporter.report(BuildEvent::Finished {
                    service: b.service.clone(),
                    outcome: o.clone(),
                });
                o
            } else if let Some((o, node)) = same {
                // Built once, under the first service that names the image.
                reporter.report(BuildEvent::Finished {
                    service: b.service.clone(),
                    outcome: o.clone(),
                });
                ran_on = node;
                o
            } else {
                let _permit = tokio::select! {
                    p = limit.acquire_owned() => p,
                    _ = shutdown.requested() => {
                        let o = cancelled(&b, started, reporter.as_ref());
                        if let Some(tx) = done {
                            let _ = tx.send(Some((o.clone(), None)));
                        }
                        return (b.service, o);
                    }
                };
                let usable: Vec<bool> = on.iter().map(Option::is_some).collect();
                let mut retry = None;
                loop {
                    let Some(i) = scheduler.take(&b.service, &usable) else {
                        let o = ServiceOutcome {
                            error: Some("no builder of the pool is left that can build it".into()),
                            hint: Some("the builders it can go to were lost during this run; check them with `cbuild doctor --builder …` and build again".into()),
                            ..ServiceOutcome::without_build(b.image.clone(), started.elapsed())
                        };
                        reporter.report(BuildEvent::Finished {
                            service: b.service.clone(),
                            outcome: o.clone(),
                        });
                        break o;
                    };
                    let node = &scheduler.nodes()[i];
                    let nb = on[i].as_ref().unwrap_or(&b);
                    let may_retry = retry.is_none() && scheduler.other_left(i, &usable);
                    let deps = match scheduler.registry() {
                        Some(r) => deps_at(&scheduler, &plans, &pushers, &cells, r, i, &built),
                        None => Vec::new(),
                    };
                    let at = Attempt {
                        client: &node.client,
                        engine: node.engine.as_ref(),
                        pusher: pushers[i].as_ref(),
                        node: &node.name,
                        pooled: scheduler.pooled(),
                        retry: retry.take(),
                        may_retry,
                        deps,
                    };
                    let r = fresh_or_build(at, nb, started, reporter.as_ref(), &mut shutdown).await;
                    scheduler.done(i);
                    match r {
                        Ok(o) => {
                            ran_on = Some(i);
                            break o;
                        }
                        Err(why) => {
                            scheduler.lose(i);
                            let msg = format!(
                                "the builder `{}` was lost during this build ({why}); building it once more on another builder of the pool",
                                node.name
                            );
                            tracing::info!(service = %b.service, "{msg}");
                            retry = Some(msg);
                        }
                    }
                }
            };
            if let Some(tx) = done {
                let _ = tx.send(Some((outcome.clone(), ran_on)));
            }
            (b.service, outcome)
        });
    }
    let mut done = Vec::new();
    let mut lost = Vec::new();
    while let Some(r) = set.join_next().await {
        match r {
            Ok(pair) => done.push(pair),
            Err(e) => lost.push(e),
        }
    }
    // A service task that panicked is a failed build, said as such (its
    // dependents already saw its channel close and did not build).
    for service in &order {
        if done.iter().any(|(s, _)| s == service) {
            continue;
        }
        let why = lost
            .iter()
            .find_map(|e| e.is_panic().then_some("an internal error (a panic)"))
            .unwrap_or("its task was stopped");
        let image = images.get(service).cloned().unwrap_or_default();
        let o = ServiceOutcome {
            error: Some(format!(
                "cbuild could not finish this build: {why}; please report it with `CBUILD_LOG=debug` output"
            )),
            ..ServiceOutcome::without_build(image, std::time::Duration::ZERO)
        };
        reporter.report(BuildEvent::Finished {
            service: service.clone(),
            outcome: o.clone(),
        });
        done.push((service.clone(), o));
    }
    done.sort_by_key(|(s, _)| order.iter().position(|o| o == s));
    done
}

/// A cancelled service's outcome, reported, after its hash caches are saved.
fn cancelled(b: &ServiceBuild, started: Instant, reporter: &dyn Reporter) -> ServiceOutcome {
    b.save_hashes();
    let o = ServiceOutcome {
        error: Some(BuildkitError::Cancelled.to_string()),
        ..ServiceOutcome::without_build(b.image.clone(), started.elapsed())
    };
    reporter.report(BuildEvent::Finished {
        service: b.service.clone(),
        outcome: o.clone(),
    });
    o
}

/// A dependency as seen from the node a dependent build runs on (pool
/// registry only).
struct DepAt<'a> {
    /// The dependency as its node built it.
    build: &'a ServiceBuild,
    /// Its node.
    node: &'a pool::Node,
    /// How it ended.
    outcome: &'a ServiceOutcome,
    /// The engine its image landed in (none: it went to a registry only).
    landing: Option<&'a Engine>,
    /// Who pushes from its engine.
    pusher: Option<&'a push::Pusher>,
    /// Whether the dependent's node cannot see its image: it is handed
    /// over through the registry.
    handoff: bool,
    /// Where the hand-off goes, and the one hand-off of its image.
    registry: &'a pool::PoolRegistry,
    cell: Option<&'a tokio::sync::OnceCell<Result<HandOff, (String, String)>>>,
}

/// The dependencies of a build placed on node `i`, with whether each must
/// be handed over (see [`pool::handoff_needed`]).
fn deps_at<'a>(
    scheduler: &'a pool::Scheduler,
    plans: &'a HashMap<String, Vec<Option<ServiceBuild>>>,
    pushers: &'a [Option<push::Pusher>],
    cells: &'a HandOffCells,
    registry: &'a pool::PoolRegistry,
    i: usize,
    built: &'a [(String, usize, ServiceOutcome)],
) -> Vec<DepAt<'a>> {
    let nodes = scheduler.nodes();
    let here = &nodes[i];
    built
        .iter()
        .filter_map(|(dep, j, outcome)| {
            let node = nodes.get(*j)?;
            let build = plans.get(dep)?.get(*j)?.as_ref()?;
            let landing = node
                .engine
                .as_ref()
                .filter(|_| export::stores_locally(build));
            let handoff = pool::handoff_needed(
                here.sees_own_store(),
                landing.map(Engine::address),
                here.store(),
            );
            Some(DepAt {
                build,
                node,
                outcome,
                landing,
                pusher: pushers.get(*j).and_then(Option::as_ref),
                handoff,
                registry,
                cell: cells.get(dep),
            })
        })
        .collect()
}

/// The IDs of the dependency images of `b` that did not land in `engine`
/// (the engine the dependent's node checks freshness in), as they are
/// where they landed: that engine's image of the same name may be an older
/// one, which must not make the dependent look up to date.
async fn dep_ids(
    b: &ServiceBuild,
    engine: Option<&Engine>,
    deps: &[DepAt<'_>],
) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for d in deps {
        let same = matches!((d.landing, engine), (Some(a), Some(e)) if a.address() == e.address());
        if same {
            continue;
        }
        let id = match d.landing {
            Some(l) => match l.image(&d.build.image).await {
                Ok(Some(img)) => img.id,
                _ => "missing".to_string(),
            },
            None => d
                .outcome
                .image_id
                .clone()
                .unwrap_or_else(|| "missing".into()),
        };
        let name = plan::normalize_image(&d.build.image);
        for base in b.bases.iter().filter(|x| plan::normalize_image(x) == name) {
            out.insert(base.clone(), id.clone());
        }
    }
    out
}

/// Hands the image of `d` over through a registry: its own push when it
/// was pushed (nothing more to send), else a push from the engine it
/// landed in under a content-derived tag of the pool registry. Once per
/// dependency.
async fn hand_off(d: &DepAt<'_>) -> Result<HandOff, (String, String)> {
    let go = || async {
        let dep = &d.build.service;
        let failed = |why: String, hint: String| {
            (
                format!(
                    "cannot hand the image of `{dep}` (built on `{}`) to this build through the pool registry `{}`: {why}",
                    d.node.name, d.registry
                ),
                format!("{hint} (the pool registry is `--pool-registry` or `x-cbuild: pool_registry`)"),
            )
        };
        if let Some(h) = own_push(d) {
            return Ok(h);
        }
        let Some(engine) = d.landing else {
            return Err(failed(
                "its image is in no engine cbuild can push it from, and it was not pushed".into(),
                "give the builder that built it an engine (DOCKER_HOST), or build with `--push`"
                    .into(),
            ));
        };
        let id = match engine.image(&d.build.image).await {
            Ok(Some(img)) => img.id,
            Ok(None) => {
                return Err(failed(
                    format!(
                        "the engine at `{}` has no image `{}`",
                        engine.address(),
                        d.build.image
                    ),
                    "build again".into(),
                ))
            }
            Err(e) => {
                return Err(failed(
                    e.to_string(),
                    "check the engine with `cbuild doctor`".into(),
                ))
            }
        };
        let project = d
            .build
            .solve
            .frontend_attrs
            .get("label:com.docker.compose.project")
            .cloned()
            .unwrap_or_default();
        let target = d.registry.reference(&project, dep, &id);
        let Some(pusher) = d.pusher else {
            return Err(failed("no registry client".into(), "report this".into()));
        };
        let digest = pusher
            .hand_off(engine, &id, &target)
            .await
            .map_err(|e| failed(e.message, e.hint))?;
        let repo = target.rsplit_once(':').map(|(r, _)| r).unwrap_or(&target);
        Ok(HandOff {
            dependency: dep.clone(),
            registry: d.registry.host.clone(),
            reference: format!("{repo}@{digest}"),
        })
    };
    match d.cell {
        Some(cell) => cell.get_or_init(go).await.clone(),
        None => go().await,
    }
}

/// The dependency's own push as a hand-off, when it was pushed and the
/// manifest digest under its name is known: found in the registry by its
/// build record, recorded with its build, or reported by the exporter
/// that pushed it.
fn own_push(d: &DepAt<'_>) -> Option<HandOff> {
    if !d.build.push {
        return None;
    }
    let digest = match d.outcome.from_registry {
        true => d.outcome.image_id.clone(),
        false => fresh::pushed(d.build)
            .get(&d.build.image)
            .cloned()
            .or_else(|| {
                (!export::push_by_engine(d.build))
                    .then(|| d.outcome.exporter_response.get("containerimage.digest"))
                    .flatten()
                    .cloned()
            }),
    }?;
    let r = crate::registry::Reference::parse(&d.build.image).ok()?;
    let name = d.build.image.split('@').next().unwrap_or_default();
    let repo = match name.rsplit_once(':') {
        Some((repo, tag)) if !tag.contains('/') => repo,
        _ => name,
    };
    Some(HandOff {
        dependency: d.build.service.clone(),
        registry: r.registry,
        reference: format!("{repo}@{digest}"),
    })
}

/// The frontend attributes that point `b` at handed-off images: a
/// `service:` named context becomes the pushed reference, and a `FROM` (or
/// `COPY --from`) of the dependency's image name gets a named context of
/// that name (BuildKit's named-context override, as buildx bake gives a
/// `target:` context built elsewhere).
fn handoff_attrs(
    b: &ServiceBuild,
    deps: &[DepAt<'_>],
    handoffs: &[HandOff],
) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for h in handoffs {
        let Some(d) = deps.iter().find(|d| d.build.service == h.dependency) else {
            continue;
        };
        let value = format!("docker-image://{}", h.reference);
        let planned = format!("docker-image://{}", d.build.image);
        for (k, v) in &b.solve.frontend_attrs {
            if k.starts_with("context:") && *v == planned {
                out.insert(k.clone(), value.clone());
            }
        }
        let name = plan::normalize_image(&d.build.image);
        for base in b.bases.iter().filter(|x| plan::normalize_image(x) == name) {
            let key = format!("context:{}", pool::context_key(base));
            if !b.solve.frontend_attrs.contains_key(&key) {
                out.insert(key, value.clone());
            }
        }
    }
    out
}

/// Where one attempt at a service runs.
struct Attempt<'a> {
    client: &'a Client,
    engine: Option<&'a Engine>,
    pusher: Option<&'a push::Pusher>,
    node: &'a str,
    pooled: bool,
    /// Why this is a second attempt.
    retry: Option<String>,
    /// Whether a lost node may end in `Err` (another node is left).
    may_retry: bool,
    /// Its dependencies, with a pool registry.
    deps: Vec<DepAt<'a>>,
}

/// Skips `b` when the engine holds it up to date, else builds it. `Err`:
/// the node was lost and another one may build it (nothing was reported
/// as finished).
async fn fresh_or_build(
    at: Attempt<'_>,
    b: &ServiceBuild,
    started: Instant,
    reporter: &dyn Reporter,
    shutdown: &mut Shutdown,
) -> Result<ServiceOutcome, String> {
    let engine = at.engine;
    let known = dep_ids(b, engine, &at.deps).await;
    let mut fresh = match engine {
        Some(e) if !b.force => fresh::check_with(b, e, &known).await,
        _ => fresh::Freshness::NotBuilt,
    };
    // With `--push`, up to date also means the registry holds
    // what this build pushed, under every name.
    let mut push_now = None;
    if let (fresh::Freshness::UpToDate { .. }, Some(p)) = (&fresh, at.pusher) {
        if b.push {
            if let Err(why) = p.held(b, &fresh::pushed(b)).await {
                tracing::info!(service = %b.service, "to push: {why}");
                match engine {
                    // The engine holds the current image: it
                    // only needs pushing.
                    Some(e) if export::push_by_engine(b) => {
                        push_now = Some(p.through_engine(e, b).await)
                    }
                    _ => fresh = fresh::Freshness::Stale(why),
                }
            }
        }
    }
    // Not up to date here: the registry may hold a build of exactly these
    // inputs, made elsewhere (never taken for `--no-cache` or `--pull`,
    // which ask for a fresh build). Without `--push`, only when asked
    // (`--remote-records`): the engine then pulls it.
    let mut remote = None;
    if let (false, true, Some(e), Some(p)) = (
        matches!(fresh, fresh::Freshness::UpToDate { .. }),
        (b.push || b.remote_records) && !b.force,
        engine,
        at.pusher,
    ) {
        remote = records::check(b, e, p).await;
    }
    if let Some(hit) = remote {
        b.save_hashes();
        let o = ServiceOutcome {
            image_id: Some(hit.image_id),
            hashing: b.hash_counts(),
            up_to_date: true,
            from_registry: true,
            pulled: hit.pulled,
            ..ServiceOutcome::without_build(b.image.clone(), started.elapsed())
        };
        reporter.report(BuildEvent::Finished {
            service: b.service.clone(),
            outcome: o.clone(),
        });
        Ok(o)
    } else if let fresh::Freshness::UpToDate { image_id } = fresh {
        let (error, hint) = match push_now {
            Some(Ok(pushed)) => {
                if let Err(e) = fresh::add_pushed(b, pushed.clone()) {
                    tracing::warn!("cannot record the push of `{}`: {e}", b.service);
                }
                // The image pushed now was built here earlier: its record
                // goes beside it.
                if let (Some(e), Some(p)) = (engine, at.pusher) {
                    let bases = fresh::base_ids(e, &b.bases).await;
                    let served = fresh::served(b);
                    if let Some(options) = records::remote_options(b, &bases) {
                        if !served.is_empty() {
                            records::store(p, b, options, served, pushed).await;
                        }
                    }
                }
                (None, None)
            }
            Some(Err(e)) => (Some(e.message), Some(e.hint)),
            None => (None, None),
        };
        b.save_hashes();
        let o = ServiceOutcome {
            image_id: Some(image_id),
            hashing: b.hash_counts(),
            up_to_date: error.is_none(),
            error,
            hint,
            ..ServiceOutcome::without_build(b.image.clone(), started.elapsed())
        };
        reporter.report(BuildEvent::Finished {
            service: b.service.clone(),
            outcome: o.clone(),
        });
        Ok(o)
    } else if shutdown.is_requested() {
        // Asked to stop while checking: BuildKit's copy was
        // not touched, so the clock stays valid.
        Ok(cancelled(b, started, reporter))
    } else {
        // Only a build that runs needs its dependencies' images.
        let mut handoffs = Vec::new();
        for d in at.deps.iter().filter(|d| d.handoff) {
            match hand_off(d).await {
                Ok(h) => handoffs.push(h),
                Err((error, hint)) => {
                    b.save_hashes();
                    let o = ServiceOutcome {
                        error: Some(error),
                        hint: Some(hint),
                        ..ServiceOutcome::without_build(b.image.clone(), started.elapsed())
                    };
                    reporter.report(BuildEvent::Finished {
                        service: b.service.clone(),
                        outcome: o.clone(),
                    });
                    return Ok(o);
                }
            }
        }
        build_one(at, b, known, handoffs, reporter, shutdown).await
    }
}

/// Builds `b`; `known` are base image IDs known from elsewhere (see
/// [`dep_ids`]), `handoffs` the dependency images it reads from a registry.
async fn build_one(
    at: Attempt<'_>,
    b: &ServiceBuild,
    known: BTreeMap<String, String>,
    handoffs: Vec<HandOff>,
    reporter: &dyn Reporter,
    shutdown: &mut Shutdown,
) -> Result<ServiceOutcome, String> {
    let (client, engine, pusher) = (at.client, at.engine, at.pusher);
    let started = Instant::now();
    // The inputs as they are when the build starts. A handed-off image is
    // the dependency's own image: its identity is already among the bases,
    // and where it was read from is no input.
    let mut inputs = None;
    let mut bases = Default::default();
    if let Some(e) = engine.filter(|_| b.record.is_some() || b.push) {
        bases = fresh::base_ids(e, &b.bases).await;
        bases.extend(known);
        inputs = Some(fresh::inputs_digest(b, &bases));
    }
    let solved = match handoff_attrs(b, &at.deps, &handoffs) {
        attrs if attrs.is_empty() => None,
        attrs => {
            let mut s = b.clone();
            s.solve.frontend_attrs.extend(attrs);
            Some(s)
        }
    };
    let remote_options = b.push.then(|| records::remote_options(b, &bases)).flatten();
    let why_started = why::started(b, engine, bases).await;
    reporter.report(BuildEvent::Started {
        service: b.service.clone(),
        image: b.image.clone(),
        node: Some(at.node.to_string()),
        retry: at.retry,
        pooled: at.pooled,
        handoffs,
    });
    // Another cbuild building this service goes first; this build then
    // starts from what that one left. Its build may take long: Ctrl-C while
    // waiting stops this one at once (nothing was sent, so the clock and
    // the record stay valid; the waiting thread ends with the process).
    let locked = tokio::select! {
        () = lock_clocks(b) => true,
        () = shutdown.requested() => false,
    };
    if !locked {
        b.save_hashes();
        let outcome = ServiceOutcome {
            error: Some(BuildkitError::Cancelled.to_string()),
            hashing: b.hash_counts(),
            ..ServiceOutcome::without_build(b.image.clone(), started.elapsed())
        };
        reporter.report(BuildEvent::Finished {
            service: b.service.clone(),
            outcome: outcome.clone(),
        });
        return Ok(outcome);
    }
    let (tx, mut rx) = mpsc::unbounded_channel::<StatusUpdate>();
    let mut build = Box::pin(localcache::build(
        client,
        engine,
        solved.as_ref().unwrap_or(b),
        tx,
    ));
    let mut steps = StepCounter::default();
    let mut progress = why::ProgressLog::default();
    let result = loop {
        tokio::select! {
            r = &mut build => break r,
            _ = shutdown.requested() => break Err(BuildkitError::Cancelled),
            Some(update) = rx.recv() => {
                steps.count(&update);
                progress.update(&update);
                reporter.report(BuildEvent::Status {
                    service: b.service.clone(),
                    update,
                });
            }
        }
    };
    // Cancels the Solve call if it is still running: BuildKit then stops
    // the build, and the session closes.
    drop(build);
    while let Ok(update) = rx.try_recv() {
        steps.count(&update);
        progress.update(&update);
        reporter.report(BuildEvent::Status {
            service: b.service.clone(),
            update,
        });
    }
    let hashing = b.finish(result.is_ok());
    // The push, when the engine makes it: only of a whole, stored image.
    // A failed one leaves the build recorded without it, so the next
    // `--push` pushes again.
    let mut pushed = std::collections::BTreeMap::new();
    let mut push_failure = None;
    if let Ok(r) = &result {
        if export::push_by_engine(b) {
            match (engine, pusher) {
                (Some(e), Some(p)) => match p.through_engine(e, b).await {
                    Ok(m) => pushed = m,
                    Err(e) => push_failure = Some(e),
                },
                _ => {
                    push_failure = Some(push::PushError {
                        message: "no Docker engine answered to push the image".into(),
                        hint: "set DOCKER_HOST to the engine that holds the image".into(),
                    })
                }
            }
        } else if b.push {
            if let Some(d) = r.outcome.exporter_response.get("containerimage.digest") {
                pushed = b
                    .tagged_names()
                    .into_iter()
                    .map(|n| (n, d.clone()))
                    .collect();
            }
        }
    }
    why::save_last(
        b,
        why_started,
        &progress,
        result.is_ok(),
        result.as_ref().ok().map(|r| &r.transfer),
    );
    // A whole push: its record goes to the registry beside it.
    if let (Ok(r), None, Some(options), Some(p)) = (&result, &push_failure, remote_options, pusher)
    {
        if !pushed.is_empty() && !r.transfer.served.is_empty() {
            records::store(p, b, options, r.transfer.served.clone(), pushed.clone()).await;
        }
    }
    match (&result, inputs.filter(|_| b.record.is_some())) {
        (Ok(r), Some(inputs)) => {
            if let Some(id) = r.outcome.image_id() {
                let digests = r.outcome.image_digests();
                let served = r.transfer.served.clone();
                if let Err(e) = fresh::save(b, inputs, id, digests, served, pushed) {
                    tracing::warn!("cannot record the build of `{}`: {e}", b.service);
                }
            }
        }
        _ => fresh::forget(b),
    }
    // Only now may another cbuild build this service: its freshness check
    // must see this build's record, and its record must come last.
    for t in &b.tracked {
        t.clock.release();
    }
    if let Err(e) = &result {
        if at.may_retry && pool::node_lost(e) && !shutdown.is_requested() {
            return Err(e.to_string());
        }
    }
    let refusal = match &result {
        Err(e) => cache_refusal(b, client, &e.to_string())
            .or_else(|| platform::sbom_refusal(&b.attests, &e.to_string()))
            .or_else(|| {
                b.push
                    .then(|| push::solve_refusal(b, &e.to_string()))
                    .flatten()
                    .map(|p| (p.message, p.hint))
            }),
        Ok(_) => push_failure.map(|p| (p.message, p.hint)),
    };
    let outcome = match result {
        Ok(r) => ServiceOutcome {
            image: b.image.clone(),
            image_id: r.outcome.image_id().map(str::to_string),
            hint: refusal.as_ref().map(|(_, h)| h.clone()),
            error: refusal.map(|(m, _)| m),
            elapsed: started.elapsed(),
            exporter_response: r.outcome.exporter_response.clone().into_iter().collect(),
            steps_run: steps.run,
            steps_cached: steps.cached,
            advice: if steps.run > 0 {
                why::advice_count(b)
            } else {
                0
            },
            transfer: r.transfer,
            hashing,
            up_to_date: false,
            from_registry: false,
            pulled: false,
        },
        Err(e) => ServiceOutcome {
            image: b.image.clone(),
            image_id: None,
            hint: refusal
                .as_ref()
                .map(|(_, h)| h.clone())
                .or_else(|| e.hint()),
            error: Some(refusal.map(|(m, _)| m).unwrap_or_else(|| e.to_string())),
            elapsed: started.elapsed(),
            transfer: Default::default(),
            hashing,
            up_to_date: false,
            from_registry: false,
            pulled: false,
            exporter_response: Default::default(),
            steps_run: steps.run,
            steps_cached: steps.cached,
            advice: 0,
        },
    };
    reporter.report(BuildEvent::Finished {
        service: b.service.clone(),
        outcome: outcome.clone(),
    });
    Ok(outcome)
}

/// Takes the content clocks of `b` (in one order, so two processes cannot
/// each hold one the other waits for), saying on stderr when another cbuild
/// holds one. A lock that cannot be taken only costs the serialisation.
async fn lock_clocks(b: &ServiceBuild) {
    let mut clocks: Vec<_> = b.tracked.iter().map(|t| t.clock.clone()).collect();
    clocks.sort_by_key(|c| c.lock_path());
    let service = b.service.clone();
    let locked = tokio::task::spawn_blocking(move || {
        for clock in clocks {
            let waiting = |path: &std::path::Path| {
                tracing::warn!(
                    "waiting for another cbuild that is building `{service}` (lock `{}`)",
                    path.display()
                );
            };
            if let Err(e) = clock.lock(waiting) {
                tracing::warn!("cannot lock the content clock of `{service}`: {e}");
            }
        }
    })
    .await;
    if let Err(e) = locked {
        tracing::warn!("cannot lock the content clocks of `{}`: {e}", b.service);
    }
}

/// Counts a build's Dockerfile steps (`[n/m] …` vertices) once each, as
/// run or taken from the cache.
#[derive(Default)]
struct StepCounter {
    seen: std::collections::HashSet<String>,
    run: usize,
    cached: usize,
}

impl StepCounter {
    fn count(&mut self, update: &StatusUpdate) {
        for v in &update.vertexes {
            let is_step = v.name.starts_with('[') && !v.name.starts_with("[internal]");
            if !is_step || (v.completed.is_none() && !v.cached) || !v.error.is_empty() {
                continue;
            }
            if self.seen.insert(v.digest.clone()) {
                if v.cached {
                    self.cached += 1;
                } else {
                    self.run += 1;
                }
            }
        }
    }
}

/// A builder's refusal of a cache backend (`unknown cache exporter:
/// "registry"`), said with the Compose key that asked for it and the builder,
/// with what to do instead. The builder decides before it builds anything.
fn cache_refusal(b: &ServiceBuild, client: &Client, message: &str) -> Option<(String, String)> {
    let (key, entries, rest) = if let Some(i) = message.find("unknown cache exporter: ") {
        ("cache_to", &b.solve.cache_exports, &message[i + 24..])
    } else if let Some(i) = message.find("unknown cache importer: ") {
        ("cache_from", &b.solve.cache_imports, &message[i + 24..])
    } else {
        return None;
    };
    let kind = rest.split('"').nth(1)?;
    let index = entries.iter().position(|e| e.kind == kind)?;
    Some((
        format!(
            "`services.{}.build.{key}[{index}]`: the builder at `{}` cannot {} cache of `type={kind}`",
            b.service,
            client.address(),
            if key == "cache_to" { "export" } else { "import" },
        ),
        "a Docker engine with the graph driver exports only `type=inline` cache; use `type=inline`, or build on an engine with the containerd image store or a standalone buildkitd (`--builder`)".into(),
    ))
}
