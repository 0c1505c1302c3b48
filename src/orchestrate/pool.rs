//! Builder pools: one project's services spread over several BuildKit
//! nodes (`--builder` given several times, a buildx builder of several
//! nodes, or `x-cbuild: builders:`).
//!
//! Placement rules, in order:
//! - a node that cannot build a service (its platforms, its image store)
//!   never gets it (see [`prepare`]);
//! - services that share a context directory go to one node, which keeps
//!   that node's snapshot of the context warm;
//! - without a pool registry, a service and the services whose image it
//!   uses (`FROM <service image>`, `additional_contexts: service:`) go to
//!   one node too, so the dependency's image is where the dependent build
//!   looks for it; with one (`--pool-registry`), they are placed freely and
//!   the image is handed over through the registry when the dependent's
//!   node cannot see it (see [`handoff_needed`]);
//! - otherwise the node with the fewest running builds (then the fewest
//!   given so far) gets the work.
//!
//! A node lost during a build (its connection or session broke) is left
//! out from then on, and that build is started once more on another node.

use std::collections::HashMap;
use std::sync::Mutex;

use crate::buildkit::{BuildkitError, Client};
use crate::engine::Engine;

use super::export::{self, Choice, Unable};
use super::plan::ServiceBuild;

/// One builder of the pool.
pub struct Node {
    /// How it is named in messages and progress (its address).
    pub name: String,
    /// The connection.
    pub client: Client,
    /// The engine its images land in (for freshness checks and pushes).
    pub engine: Option<Engine>,
    /// Its exporter. `None`: the builds are already pointed at it (a pool
    /// of one).
    pub choice: Option<Choice>,
}

/// How a node is named in messages and progress: its address as the user
/// writes it, without the kind `Address` shows after it.
pub fn node_name(address: &crate::buildkit::Address) -> String {
    let text = address.to_string();
    match text.rsplit_once(" (") {
        Some((a, _)) => a.to_string(),
        None => text,
    }
}

/// A planned service as each node would build it (`None`: that node
/// cannot).
pub struct Pooled {
    /// The plan, as made before any builder was known.
    pub build: ServiceBuild,
    /// Per node, the build with that node's exporter.
    pub on: Vec<Option<ServiceBuild>>,
}

/// Points each build at each node's exporter, and keeps the nodes that can
/// build it. A service no node can build is refused before anything runs,
/// with what the first node said.
pub fn prepare(builds: Vec<ServiceBuild>, nodes: &[Node]) -> Result<Vec<Pooled>, Unable> {
    let mut out = Vec::new();
    for b in builds {
        let mut on = Vec::new();
        let mut first_refusal = None;
        for n in nodes {
            let Some(choice) = &n.choice else {
                on.push(Some(b.clone()));
                continue;
            };
            let mut one = [b.clone()];
            export::retarget(&mut one, choice.exporter);
            export::retarget_push(&mut one, choice);
            match export::check(&one, choice, &n.name, &n.client.workers()) {
                Ok(()) => on.push(Some(one.into_iter().next().unwrap_or_else(|| b.clone()))),
                Err(e) => {
                    tracing::info!(service = %b.service, node = %n.name, "not on this node: {e}");
                    first_refusal.get_or_insert(e);
                    on.push(None);
                }
            }
        }
        if on.iter().all(Option::is_none) {
            if let Some(e) = first_refusal {
                return Err(e);
            }
        }
        out.push(Pooled { build: b, on });
    }
    Ok(out)
}

/// The registry through which a pool hands a service's image to a
/// dependent built on another node (`--pool-registry`, `x-cbuild:
/// pool_registry:`): `HOST[:PORT]` and an optional repository prefix.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PoolRegistry {
    /// `host[:port]`.
    pub host: String,
    /// The repository path before the image's own name (`team/ci`), or
    /// empty.
    pub prefix: String,
}

impl std::fmt::Display for PoolRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.prefix.is_empty() {
            true => write!(f, "{}", self.host),
            false => write!(f, "{}/{}", self.host, self.prefix),
        }
    }
}

impl PoolRegistry {
    /// Reads `HOST[:PORT][/PREFIX]`; the error says what is wrong and what
    /// to write.
    pub fn parse(text: &str) -> Result<Self, String> {
        let want = "write `HOST[:PORT][/PREFIX]`, e.g. `registry.example.com:5000/ci` (no scheme, tag or digest)";
        if text.contains("://") {
            return Err(format!("`{text}` has a scheme; {want}"));
        }
        let (host, prefix) = text.split_once('/').unwrap_or((text, ""));
        let (name, port) = match host.rsplit_once(':') {
            Some((n, p)) => (n, Some(p)),
            None => (host, None),
        };
        let name_ok = !name.is_empty()
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-')
            && !name.starts_with(['.', '-']);
        if !name_ok {
            return Err(format!(
                "`{text}` does not start with a registry host; {want}"
            ));
        }
        if let Some(p) = port {
            if p.is_empty() || !p.chars().all(|c| c.is_ascii_digit()) || p.parse::<u16>().is_err() {
                return Err(format!("`{text}`: `{p}` is no port number; {want}"));
            }
        }
        let prefix = prefix.trim_end_matches('/');
        // Repository path components, as the distribution spec allows them.
        let component_ok = |c: &str| {
            !c.is_empty()
                && c.chars()
                    .all(|ch| ch.is_ascii_lowercase() || ch.is_ascii_digit() || "._-".contains(ch))
                && c.starts_with(|ch: char| ch.is_ascii_alphanumeric())
                && c.ends_with(|ch: char| ch.is_ascii_alphanumeric())
        };
        if !prefix.is_empty() && !prefix.split('/').all(component_ok) {
            return Err(format!(
                "`{text}`: the repository prefix `{prefix}` may hold only lowercase letters, digits and `._-` between slashes; {want}"
            ));
        }
        Ok(PoolRegistry {
            host: host.to_string(),
            prefix: prefix.to_string(),
        })
    }

    /// Where the image `image_id` of `service` (of `project`) is handed
    /// over: a tag derived from the image's content, so a hand-off of the
    /// same image is the same reference whichever run or machine made it.
    pub fn reference(&self, project: &str, service: &str, image_id: &str) -> String {
        let hex: String = image_id
            .rsplit(':')
            .next()
            .unwrap_or(image_id)
            .chars()
            .take(32)
            .collect();
        let repo = format!("{project}-{service}").to_ascii_lowercase();
        let prefix = match self.prefix.is_empty() {
            true => String::new(),
            false => format!("{}/", self.prefix),
        };
        format!("{}/{prefix}{repo}:cbuild-handoff-{hex}", self.host)
    }
}

/// Whether a dependent built on a node must get its dependency's image
/// through the registry: unless its node is a Docker engine's own BuildKit
/// (which resolves `FROM NAME` in that engine's image store) and the
/// dependency's image landed in that very engine, it would not find it (a
/// standalone buildkitd resolves names in registries only), or find an
/// older image of that name.
pub fn handoff_needed(
    sees_own_store: bool,
    dependency_store: Option<&str>,
    own_store: Option<&str>,
) -> bool {
    let same = matches!((dependency_store, own_store), (Some(a), Some(b)) if a == b);
    !(sees_own_store && same)
}

impl Node {
    /// Whether its BuildKit resolves image names in the image store of
    /// its engine (a Docker engine's own BuildKit, the `moby` exporter).
    pub fn sees_own_store(&self) -> bool {
        match &self.choice {
            Some(c) => c.exporter == export::Exporter::Moby,
            None => true,
        }
    }

    /// The engine its images land in, by address.
    pub fn store(&self) -> Option<&str> {
        self.engine.as_ref().map(Engine::address)
    }
}

/// The name under which the Dockerfile frontend looks up a named context
/// for an image reference (`FROM`, `COPY --from`): BuildKit's
/// `dockerui.NamedContext` keys it by the familiar form of the name
/// without `:latest` (`docker.io/library/app:latest` → `app`).
pub fn context_key(image: &str) -> String {
    let full = super::plan::normalize_image(image);
    let short = full
        .strip_prefix("docker.io/library/")
        .or_else(|| full.strip_prefix("docker.io/"))
        .unwrap_or(&full);
    short.strip_suffix(":latest").unwrap_or(short).to_string()
}

/// The nodes of a pool, and which builds what as builds start and end.
pub struct Scheduler {
    nodes: Vec<Node>,
    placement: Placement,
    registry: Option<PoolRegistry>,
}

impl Scheduler {
    /// A scheduler over `nodes` for `builds`; with a pool registry,
    /// dependencies do not tie services to one node.
    pub fn new(nodes: Vec<Node>, builds: &[Pooled], registry: Option<PoolRegistry>) -> Self {
        let groups = groups(builds.iter().map(|p| &p.build), registry.is_none());
        let placement = Placement::new(nodes.len(), groups);
        Scheduler {
            nodes,
            placement,
            registry,
        }
    }

    /// The nodes.
    pub fn nodes(&self) -> &[Node] {
        &self.nodes
    }

    /// The pool registry, if one was given.
    pub fn registry(&self) -> Option<&PoolRegistry> {
        self.registry.as_ref()
    }

    /// Whether several nodes share the work.
    pub fn pooled(&self) -> bool {
        self.nodes.len() > 1
    }

    /// See [`Placement::take`].
    pub fn take(&self, service: &str, usable: &[bool]) -> Option<usize> {
        self.placement.take(service, usable)
    }

    /// The build on `node` ended.
    pub fn done(&self, node: usize) {
        self.placement.done(node)
    }

    /// `node` was lost: nothing more goes there.
    pub fn lose(&self, node: usize) {
        self.placement.lose(node)
    }

    /// Whether another node than `node` could still build with `usable`.
    pub fn other_left(&self, node: usize, usable: &[bool]) -> bool {
        self.placement.other_left(node, usable)
    }
}

/// The placement rules (see the module comment) over node numbers.
struct Placement {
    group_of: HashMap<String, usize>,
    state: Mutex<State>,
}

struct State {
    running: Vec<usize>,
    given: Vec<usize>,
    lost: Vec<bool>,
    pinned: HashMap<usize, usize>,
}

impl Placement {
    fn new(nodes: usize, group_of: HashMap<String, usize>) -> Self {
        Placement {
            group_of,
            state: Mutex::new(State {
                running: vec![0; nodes],
                given: vec![0; nodes],
                lost: vec![false; nodes],
                pinned: HashMap::new(),
            }),
        }
    }

    /// Takes a node for `service` among those it can be built on
    /// (`usable[i]`), counting it as running there until [`Self::done`].
    /// `None`: no such node is left.
    fn take(&self, service: &str, usable: &[bool]) -> Option<usize> {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let ok = |i: usize, st: &State| usable.get(i).copied().unwrap_or(false) && !st.lost[i];
        let group = self.group_of.get(service).copied();
        let pinned = group.and_then(|g| st.pinned.get(&g).copied());
        let chosen = match pinned.filter(|&i| ok(i, &st)) {
            Some(i) => i,
            None => {
                let i = (0..st.running.len())
                    .filter(|&i| ok(i, &st))
                    .min_by_key(|&i| (st.running[i], st.given[i], i))?;
                // A group whose node was lost moves as a whole; one whose
                // node cannot build this service stays where it is.
                if let Some(g) = group {
                    if pinned.is_none_or(|p| st.lost[p]) {
                        st.pinned.insert(g, i);
                    }
                }
                i
            }
        };
        st.running[chosen] += 1;
        st.given[chosen] += 1;
        Some(chosen)
    }

    fn done(&self, node: usize) {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        st.running[node] = st.running[node].saturating_sub(1);
    }

    fn lose(&self, node: usize) {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        st.lost[node] = true;
    }

    fn other_left(&self, node: usize, usable: &[bool]) -> bool {
        let st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        (0..st.running.len())
            .any(|i| i != node && !st.lost[i] && usable.get(i).copied().unwrap_or(false))
    }
}

/// The placement groups: services joined by a shared context directory or
/// (`join_deps`) by a dependency (see the module comment), as group
/// numbers.
fn groups<'a>(
    builds: impl Iterator<Item = &'a ServiceBuild>,
    join_deps: bool,
) -> HashMap<String, usize> {
    let builds: Vec<&ServiceBuild> = builds.collect();
    let index: HashMap<&str, usize> = builds
        .iter()
        .enumerate()
        .map(|(i, b)| (b.service.as_str(), i))
        .collect();
    let mut parent: Vec<usize> = (0..builds.len()).collect();
    fn root(p: &mut [usize], mut i: usize) -> usize {
        while p[i] != i {
            p[i] = p[p[i]];
            i = p[i];
        }
        i
    }
    let join = |p: &mut Vec<usize>, a: usize, b: usize| {
        let (ra, rb) = (root(p, a), root(p, b));
        if ra != rb {
            p[ra.max(rb)] = ra.min(rb);
        }
    };
    let mut by_dir: HashMap<&std::path::Path, usize> = HashMap::new();
    for (i, b) in builds.iter().enumerate() {
        for t in &b.tracked {
            match by_dir.get(t.root.as_path()) {
                Some(&j) => join(&mut parent, i, j),
                None => {
                    by_dir.insert(t.root.as_path(), i);
                }
            }
        }
        let deps = b.deps.iter().filter(|_| join_deps);
        for d in deps.chain(b.same_as.iter()) {
            if let Some(&j) = index.get(d.as_str()) {
                join(&mut parent, i, j);
            }
        }
    }
    builds
        .iter()
        .enumerate()
        .map(|(i, b)| (b.service.clone(), root(&mut parent, i)))
        .collect()
}

/// Whether a build failed because its node went away (the connection or
/// the session broke), not because of what it built.
pub fn node_lost(e: &BuildkitError) -> bool {
    use tonic::Code;
    match e {
        BuildkitError::Connect { .. }
        | BuildkitError::Transport { .. }
        | BuildkitError::Timeout { .. }
        | BuildkitError::Session(_)
        | BuildkitError::SessionClosed { .. } => true,
        BuildkitError::Rpc { status, .. } => {
            matches!(
                status.code(),
                Code::Unavailable | Code::Unknown | Code::Internal
            ) && is_transport_text(status.message())
        }
        BuildkitError::Solve { message } => is_transport_text(message),
        _ => false,
    }
}

/// What tonic and hyper say when the connection under a call broke.
fn is_transport_text(m: &str) -> bool {
    let m = m.to_ascii_lowercase();
    [
        "transport error",
        "connection reset",
        "broken pipe",
        "connection refused",
        "error trying to connect",
        "connection closed",
        "stream closed",
        "h2 protocol error",
        "unexpected eof",
    ]
    .iter()
    .any(|t| m.contains(t))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn placement(groups: &[(&str, usize)]) -> Placement {
        Placement::new(2, groups.iter().map(|(s, g)| (s.to_string(), *g)).collect())
    }

    #[test]
    fn a_group_stays_on_its_node_and_other_work_goes_to_the_least_loaded() {
        let p = placement(&[("a", 0), ("c", 0), ("b", 1), ("d", 2)]);
        let both = [true, true];
        assert_eq!(p.take("a", &both), Some(0));
        assert_eq!(p.take("b", &both), Some(1));
        // `c` shares `a`'s context: node 0, busy or not.
        assert_eq!(p.take("c", &both), Some(0));
        // Node 1 runs `b`, node 0 nothing any more: node 0.
        p.done(0);
        p.done(0);
        assert_eq!(p.take("d", &both), Some(0));
        // Both idle: node 1 was given less.
        p.done(0);
        p.done(1);
        assert_eq!(p.take("e", &both), Some(1));
    }

    #[test]
    fn a_node_without_the_platform_never_gets_the_service() {
        let p = placement(&[("a", 0), ("b", 1)]);
        assert_eq!(p.take("a", &[false, true]), Some(1));
        // Node 1 is busy, but it is the only one `b` can go to.
        assert_eq!(p.take("b", &[false, true]), Some(1));
        assert_eq!(p.take("x", &[false, false]), None);
    }

    #[test]
    fn a_lost_node_gets_nothing_more_and_its_group_moves() {
        let p = placement(&[("a", 0), ("c", 0)]);
        let both = [true, true];
        assert_eq!(p.take("a", &both), Some(0));
        assert!(p.other_left(0, &both));
        p.lose(0);
        p.done(0);
        assert!(!p.other_left(1, &both));
        assert_eq!(p.take("a", &both), Some(1));
        assert_eq!(p.take("c", &both), Some(1));
        assert_eq!(p.take("c", &[true, false]), None);
    }

    #[test]
    fn pool_registry_values() {
        let r = PoolRegistry::parse("127.0.0.1:5000/team/ci").unwrap();
        assert_eq!(r.host, "127.0.0.1:5000");
        assert_eq!(r.prefix, "team/ci");
        assert_eq!(r.to_string(), "127.0.0.1:5000/team/ci");
        assert_eq!(
            r.reference(
                "proj",
                "Base",
                "sha256:0123456789abcdef0123456789abcdef0123456789"
            ),
            "127.0.0.1:5000/team/ci/proj-base:cbuild-handoff-0123456789abcdef0123456789abcdef"
        );
        let r = PoolRegistry::parse("registry.example.com").unwrap();
        assert_eq!(
            r.reference("p", "d", "sha256:ab"),
            "registry.example.com/p-d:cbuild-handoff-ab"
        );
        for bad in [
            "http://r:5000",
            "",
            "/prefix",
            "r:port",
            "r:99999",
            "r/Upper",
            "r/a//b",
            "r/a:tag",
            "r/-a",
        ] {
            assert!(PoolRegistry::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn named_context_keys_are_the_familiar_names() {
        assert_eq!(context_key("app"), "app");
        assert_eq!(context_key("app:latest"), "app");
        assert_eq!(context_key("docker.io/library/app:latest"), "app");
        assert_eq!(context_key("user/app:v1"), "user/app:v1");
        assert_eq!(context_key("127.0.0.1:5000/app"), "127.0.0.1:5000/app");
    }

    #[test]
    fn a_hand_off_unless_the_node_sees_the_engine_the_image_landed_in() {
        let (home, other) = (Some("unix:///home.sock"), Some("unix:///other.sock"));
        // DOCKER_HOST's own BuildKit, the image loaded into DOCKER_HOST.
        assert!(!handoff_needed(true, home, home));
        // A standalone buildkitd: registries only, even for its own builds.
        assert!(handoff_needed(false, home, home));
        // Another engine's BuildKit.
        assert!(handoff_needed(true, home, other));
        // The image went to a registry only.
        assert!(handoff_needed(true, None, home));
    }

    #[test]
    fn dependencies_join_a_group_only_without_a_pool_registry() {
        let build = |name: &str, deps: &[&str]| ServiceBuild {
            service: name.into(),
            image: format!("p-{name}"),
            solve: Default::default(),
            session: Default::default(),
            tracked: Vec::new(),
            deps: deps.iter().map(|d| d.to_string()).collect(),
            same_as: None,
            bases: Vec::new(),
            force: false,
            record: None,
            push: false,
            remote_records: false,
            platforms: Default::default(),
            attests: Vec::new(),
        };
        let builds = [build("base", &[]), build("app", &["base"])];
        let joined = groups(builds.iter(), true);
        assert_eq!(joined["base"], joined["app"]);
        let free = groups(builds.iter(), false);
        assert_ne!(free["base"], free["app"]);
    }

    #[test]
    fn transport_words_are_node_loss_and_build_errors_are_not() {
        assert!(node_lost(&BuildkitError::Solve {
            message: "error reading from server: connection reset by peer".into()
        }));
        assert!(!node_lost(&BuildkitError::Solve {
            message: "process \"/bin/sh -c false\" did not complete successfully: exit code: 1"
                .into()
        }));
        assert!(!node_lost(&BuildkitError::Cancelled));
    }
}
