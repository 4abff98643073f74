//! A set of flows loaded together: one version of `ivr-flows/`. Checks what
//! crosses files (`goto` targets, routes, loops through several flows). A
//! call keeps the `Arc<FlowSet>` it started with, so a reload never changes
//! a call in progress.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde_saphyr::Location;

use super::compile::{compile, Catalog, Compiled};
use super::node::{Flow, Kind, NodeId};
use crate::config::schedule::Schedule;
use crate::config::Config;
use crate::diagnostic::{closest, Diagnostic};

#[derive(Debug)]
pub struct FlowSet {
    /// Counts loads since the engine started: 1, 2, …
    pub version: u64,
    pub flows: Vec<Flow>,
    pub schedules: BTreeMap<String, Schedule>,
    /// Transfer target name → SIP URI.
    pub transfers: BTreeMap<String, String>,
    /// Dialled number → flow index.
    routes: BTreeMap<String, usize>,
    default_route: Option<usize>,
}

impl FlowSet {
    pub fn flow(&self, name: &str) -> Option<usize> {
        self.flows.iter().position(|f| f.name == name)
    }

    /// The flow for a dialled number (the Request-URI user).
    pub fn route(&self, dialed: &str) -> Option<usize> {
        self.routes.get(dialed).copied().or(self.default_route)
    }
}

/// The flow files of a directory: `*.yaml` and `*.yml`, sorted by name.
pub fn flow_files(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file() && p.extension().is_some_and(|e| e == "yaml" || e == "yml"))
        .collect();
    files.sort();
    Ok(files)
}

/// What loading produced: the set, if it has no errors, and every
/// diagnostic (errors and warnings) in file order.
pub struct Loaded {
    pub set: Option<FlowSet>,
    pub diagnostics: Vec<Diagnostic>,
}

/// Everything a flow set is checked against, from the config and the
/// sounds directory.
pub fn catalog(config: &Config, prompts: BTreeSet<String>) -> Catalog {
    Catalog {
        prompts,
        schedules: config.schedules.keys().cloned().collect(),
        queues: config.queues.keys().cloned().collect(),
        queues_turning_away: config
            .queues
            .iter()
            .filter(|(_, q)| !q.join_empty || q.leave_empty || q.max_length > 0)
            .map(|(name, _)| name.clone())
            .collect(),
        transfers: config.transfers.keys().cloned().collect(),
        queues_with_callback: config
            .queues
            .iter()
            .filter(|(_, q)| q.callback.is_some())
            .map(|(name, _)| name.clone())
            .collect(),
    }
}

/// Loads and checks every flow in the config's flows directory.
pub fn load(config: &Config, config_path: &Path, catalog: &Catalog, version: u64) -> Loaded {
    match flow_files(&config.flows_dir) {
        Ok(files) => load_files(config, config_path, catalog, &files, version),
        Err(e) => Loaded {
            set: None,
            diagnostics: vec![Diagnostic::whole_file(
                &config.flows_dir,
                format!("cannot read the flows directory: {e}"),
            )],
        },
    }
}

/// Loads and checks the given flow files as one set.
pub fn load_files(
    config: &Config,
    config_path: &Path,
    catalog: &Catalog,
    files: &[PathBuf],
    version: u64,
) -> Loaded {
    let mut diagnostics = Vec::new();
    let mut sources = Vec::new();
    for path in files {
        match std::fs::read_to_string(path) {
            Ok(s) => sources.push((path.clone(), s)),
            Err(e) => diagnostics.push(Diagnostic::whole_file(path, format!("cannot read: {e}"))),
        }
    }
    let mut loaded = load_sources(config, config_path, catalog, sources, version);
    diagnostics.append(&mut loaded.diagnostics);
    if diagnostics.iter().any(Diagnostic::is_error) {
        loaded.set = None;
    }
    loaded.diagnostics = diagnostics;
    loaded
}

/// Checks flows given as (path, text) as one set.
pub fn load_sources(
    config: &Config,
    config_path: &Path,
    catalog: &Catalog,
    sources: Vec<(PathBuf, String)>,
    version: u64,
) -> Loaded {
    let mut diagnostics = Vec::new();
    let mut compiled: Vec<(Compiled, String)> = Vec::new();
    for (path, source) in sources {
        if let Some(c) = compile(&path, &source, catalog, &mut diagnostics) {
            compiled.push((c, source));
        }
    }
    let mut names = BTreeMap::new();
    for (i, (c, _)) in compiled.iter().enumerate() {
        if let Some(first) = names.insert(c.flow.name.clone(), i) {
            diagnostics.push(Diagnostic::whole_file(
                &c.flow.path,
                format!(
                    "the flow name `{}` is already used by {}",
                    c.flow.name,
                    compiled[first].0.flow.path.display()
                ),
            ));
        }
    }
    // `goto` targets.
    for (c, source) in &compiled {
        for (_, target, at) in &c.gotos {
            if !names.contains_key(target) {
                let hint = closest(target, names.keys().map(String::as_str))
                    .map(|h| format!(" (did you mean `{h}`?)"))
                    .unwrap_or_default();
                diagnostics.push(Diagnostic::at(
                    &c.flow.path,
                    source,
                    at.line(),
                    at.column(),
                    format!("there is no flow `{target}` to go to{hint}"),
                ));
            }
        }
    }
    // Routes.
    let mut routes = BTreeMap::new();
    let mut default_route = None;
    for (number, flow) in &config.routes {
        match names.get(flow) {
            Some(&i) if number == "default" => default_route = Some(i),
            Some(&i) => {
                routes.insert(number.clone(), i);
            }
            None => {
                let hint = closest(flow, names.keys().map(String::as_str))
                    .map(|h| format!(" (did you mean `{h}`?)"))
                    .unwrap_or_default();
                diagnostics.push(Diagnostic::whole_file(
                    config_path,
                    format!(
                        "routes: `{number}` goes to the flow `{flow}`, which is not in {}{hint}",
                        config.flows_dir.display()
                    ),
                ));
            }
        }
    }
    if !diagnostics.iter().any(Diagnostic::is_error) {
        check_loops(&compiled, &names, &mut diagnostics);
    }
    let failed = diagnostics.iter().any(Diagnostic::is_error);
    let set = (!failed).then(|| FlowSet {
        version,
        flows: compiled.into_iter().map(|(c, _)| c.flow).collect(),
        schedules: config.schedules.clone(),
        transfers: config.transfers.clone(),
        routes,
        default_route,
    });
    Loaded { set, diagnostics }
}

/// Refuses loops of nodes that never wait for the caller (`set`, `branch`,
/// `hours`, `webhook`, `goto`), across flows too: a call in one would spin.
fn check_loops(
    compiled: &[(Compiled, String)],
    names: &BTreeMap<String, usize>,
    out: &mut Vec<Diagnostic>,
) {
    type At = (usize, NodeId);
    let succ = |(f, n): At| -> Vec<At> {
        let flow = &compiled[f].0.flow;
        match &flow.nodes[n].kind {
            Kind::Goto { flow: target } => names
                .get(target)
                .map(|&g| vec![(g, compiled[g].0.flow.entry)])
                .unwrap_or_default(),
            k => k.successors().into_iter().map(|s| (f, s)).collect(),
        }
    };
    let waits = |(f, n): At| compiled[f].0.flow.nodes[n].kind.waits();
    // 0 unvisited, 1 on the current path, 2 done.
    let mut state: Vec<Vec<u8>> = compiled
        .iter()
        .map(|(c, _)| vec![0; c.flow.nodes.len()])
        .collect();
    let mut reported = false;
    for f in 0..compiled.len() {
        for n in 0..compiled[f].0.flow.nodes.len() {
            if reported || state[f][n] != 0 || waits((f, n)) {
                continue;
            }
            // Iterative DFS keeping the path, so the message can show the loop.
            let mut path: Vec<(At, Vec<At>)> = vec![((f, n), succ((f, n)))];
            state[f][n] = 1;
            while let Some((_, next)) = path.last_mut() {
                let Some(s) = next.pop() else {
                    let (at, _) = path.pop().unwrap_or(((0, 0), vec![]));
                    state[at.0][at.1] = 2;
                    continue;
                };
                if waits(s) {
                    continue;
                }
                match state[s.0][s.1] {
                    0 => {
                        state[s.0][s.1] = 1;
                        path.push((s, succ(s)));
                    }
                    1 => {
                        let start = path.iter().position(|(a, _)| *a == s).unwrap_or(0);
                        let cycle: Vec<String> = path[start..]
                            .iter()
                            .map(|((f, n), _)| {
                                let flow = &compiled[*f].0.flow;
                                format!("{}:{}", flow.name, flow.nodes[*n].name)
                            })
                            .chain([{
                                let flow = &compiled[s.0].0.flow;
                                format!("{}:{}", flow.name, flow.nodes[s.1].name)
                            }])
                            .collect();
                        let (c, source) = &compiled[s.0];
                        let at: Location = c.positions[s.1];
                        out.push(Diagnostic::at(
                            &c.flow.path,
                            source,
                            at.line(),
                            at.column(),
                            format!(
                                "the loop {} never waits for the caller (no play, menu, collect, record, survey or queue in it): a call would spin forever",
                                cycle.join(" → ")
                            ),
                        ));
                        reported = true;
                        break;
                    }
                    _ => {}
                }
            }
        }
    }
}
