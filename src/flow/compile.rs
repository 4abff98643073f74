//! The validator: a flow file in, a checked [`Flow`] or every problem out,
//! each with the line and column it is about and what was expected.
//!
//! Over 800 lines: one check per node kind and per mistake, each with its
//! own message, sharing the flow being checked.

use std::collections::{BTreeSet, HashMap};
use std::path::Path;
use std::time::Duration;

use serde_saphyr::{Location, Spanned};

use super::digits::DigitPattern;
use super::expr::{Expr, Template};
use super::model::{self, Entries, Name, PlayItem, PlayList, RawFlow, RawNode, Text};
use super::node::*;
use crate::diagnostic::{closest, Diagnostic};

/// What a flow may refer to outside itself.
#[derive(Debug, Clone, Default)]
pub struct Catalog {
    pub prompts: BTreeSet<String>,
    pub schedules: BTreeSet<String>,
    pub queues: BTreeSet<String>,
    /// Queues that may turn a caller away (join-empty false, leave-empty,
    /// max-length): a queue node needs `on-timeout` for those callers.
    pub queues_turning_away: BTreeSet<String>,
    pub transfers: BTreeSet<String>,
    /// Queues with `callback:` settings (a trunk to call back over).
    pub queues_with_callback: BTreeSet<String>,
}

/// A checked flow and what it needs from the other flows of its set.
#[derive(Debug)]
pub struct Compiled {
    pub flow: Flow,
    /// `goto` targets, checked once every flow of the set is known.
    pub gotos: Vec<(NodeId, String, Location)>,
    /// Where each node is defined.
    pub positions: Vec<Location>,
}

/// The kind keys, in the order the docs list them.
const KINDS: [&str; 15] = [
    "play",
    "menu",
    "collect",
    "hours",
    "webhook",
    "set",
    "branch",
    "queue",
    "transfer",
    "record",
    "voicemail",
    "survey",
    "goto",
    "hangup",
    "callback",
];

pub const KEYS: &str = "0123456789*#";
const NAME_HELP: &str = "letters, digits, `-` and `_`";

fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// Checks one flow file. `Err` holds at least one error; `Ok` may come with
/// warnings in `diagnostics`.
pub fn compile(
    path: &Path,
    source: &str,
    catalog: &Catalog,
    diagnostics: &mut Vec<Diagnostic>,
) -> Option<Compiled> {
    let raw: RawFlow = match parse(source) {
        Ok(r) => r,
        Err(e) => {
            diagnostics.push(Diagnostic::from_yaml(path, &e));
            return None;
        }
    };
    let errors_before = diagnostics.iter().filter(|d| d.is_error()).count();
    let mut c = Checker {
        path,
        source,
        catalog,
        out: diagnostics,
        ids: HashMap::new(),
    };
    let name = match &raw.flow {
        Some(n) => {
            if !valid_name(&n.value) {
                c.error(
                    &n.referenced,
                    format!("`{}` is not a flow name: use {NAME_HELP}", n.value),
                );
            }
            n.value.clone()
        }
        None => path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default(),
    };
    if raw.nodes.0.is_empty() {
        c.error(
            &raw.entry.referenced,
            "the flow has no nodes: add `nodes:` with at least the entry node".into(),
        );
        return None;
    }
    for (i, (key, _)) in raw.nodes.0.iter().enumerate() {
        let n = &key.value.0;
        if !valid_name(n) {
            c.error(
                &key.referenced,
                format!("`{n}` is not a node name: use {NAME_HELP}"),
            );
        }
        if c.ids.insert(n.clone(), i).is_some() {
            c.error(&key.referenced, format!("the node `{n}` is defined twice"));
        }
    }
    let entry = c.node_ref(&raw.entry);
    let on_error = raw.on_error.as_ref().and_then(|n| c.node_ref(n));
    let mut nodes = Vec::new();
    let mut gotos = Vec::new();
    let mut positions = Vec::new();
    for (i, (key, node)) in raw.nodes.0.iter().enumerate() {
        positions.push(key.referenced);
        let kind = c.node(&key.value.0, &key.referenced, node);
        if let Some(Kind::Goto { flow }) = &kind {
            if let Some(g) = &node.goto {
                gotos.push((i, flow.clone(), g.referenced));
            }
        }
        nodes.push(kind.map(|kind| Node {
            name: key.value.0.clone(),
            line: key.referenced.line(),
            kind,
        }));
    }
    let errors_after = c.out.iter().filter(|d| d.is_error()).count();
    if errors_after > errors_before {
        return None;
    }
    let nodes: Vec<Node> = nodes.into_iter().flatten().collect();
    let entry = entry?;
    let flow = Flow {
        name,
        path: path.to_owned(),
        entry,
        on_error,
        nodes,
    };
    // Nodes no path reaches are probably a mistake, but harmless.
    let mut seen = vec![false; flow.nodes.len()];
    let mut stack = vec![flow.entry];
    stack.extend(flow.on_error);
    while let Some(n) = stack.pop() {
        if std::mem::replace(&mut seen[n], true) {
            continue;
        }
        stack.extend(flow.nodes[n].kind.successors());
    }
    for (i, reached) in seen.iter().enumerate() {
        if !reached {
            let d = c.diag(
                &positions[i],
                format!(
                    "the node `{}` is never reached from `{}`",
                    flow.nodes[i].name, flow.nodes[flow.entry].name
                ),
            );
            c.out.push(d.warning());
        }
    }
    Some(Compiled {
        flow,
        gotos,
        positions,
    })
}

/// YAML as flow authors mean it: `y`, `n`, `on` and `no` are names, not
/// booleans (YAML 1.2), and a key given twice reaches the validator, which
/// says which one in the flow's own words.
pub fn parse(source: &str) -> Result<RawFlow, serde_saphyr::Error> {
    serde_saphyr::from_str_with_options(
        source,
        serde_saphyr::options! {
            duplicate_keys: serde_saphyr::DuplicateKeyPolicy::PassThrough,
            strict_booleans: true,
        },
    )
}

struct Checker<'a> {
    path: &'a Path,
    source: &'a str,
    catalog: &'a Catalog,
    out: &'a mut Vec<Diagnostic>,
    ids: HashMap<String, NodeId>,
}

/// Which transition and option keys each kind takes.
fn allowed(kind: &str) -> &'static [&'static str] {
    match kind {
        "play" => &["next", "barge-in"],
        "menu" => &["exhausted"],
        "collect" => &["next", "exhausted"],
        "hours" => &["open", "closed"],
        "webhook" => &["next", "on-error", "on-timeout"],
        "set" => &["next"],
        "branch" => &["else", "on-error"],
        "queue" => &["priority", "skills", "on-timeout"],
        "record" | "voicemail" => &["next", "on-error"],
        "survey" => &["next"],
        "transfer" => &["on-error"],
        "callback" => &["next", "on-error"],
        _ => &[],
    }
}

impl Checker<'_> {
    fn diag(&self, at: &Location, message: String) -> Diagnostic {
        Diagnostic::at(self.path, self.source, at.line(), at.column(), message)
    }

    fn error(&mut self, at: &Location, message: String) {
        let d = self.diag(at, message);
        self.out.push(d);
    }

    fn node_ref(&mut self, name: &Name) -> Option<NodeId> {
        if let Some(id) = self.ids.get(&name.value) {
            return Some(*id);
        }
        let hint = closest(&name.value, self.ids.keys().map(String::as_str))
            .map(|h| format!(" (did you mean `{h}`?)"))
            .unwrap_or_default();
        self.error(
            &name.referenced,
            format!("there is no node `{}` in this flow{hint}", name.value),
        );
        None
    }

    /// A transition the node must have.
    fn required(
        &mut self,
        node: &str,
        at: &Location,
        key: &str,
        value: &Option<Name>,
        what: &str,
    ) -> Option<NodeId> {
        match value {
            Some(n) => self.node_ref(n),
            None => {
                self.error(at, format!("the node `{node}` needs `{key}:` {what}"));
                None
            }
        }
    }

    fn optional(&mut self, value: &Option<Name>) -> Option<Option<NodeId>> {
        match value {
            Some(n) => self.node_ref(n).map(Some),
            None => Some(None),
        }
    }

    fn node(&mut self, name: &str, at: &Location, n: &RawNode) -> Option<Kind> {
        let present: Vec<&str> = [
            n.play.is_some(),
            n.menu.is_some(),
            n.collect.is_some(),
            n.hours.is_some(),
            n.webhook.is_some(),
            n.set.is_some(),
            n.branch.is_some(),
            n.queue.is_some(),
            n.transfer.is_some(),
            n.record.is_some(),
            n.voicemail.is_some(),
            n.survey.is_some(),
            n.goto.is_some(),
            n.hangup.is_some(),
            n.callback.is_some(),
        ]
        .iter()
        .zip(KINDS)
        .filter(|(set, _)| **set)
        .map(|(_, k)| k)
        .collect();
        let kind = match present.as_slice() {
            [k] => *k,
            [] => {
                self.error(
                    at,
                    format!(
                        "the node `{name}` does nothing: give it one of {}",
                        KINDS.join(", ")
                    ),
                );
                return None;
            }
            [a, b, ..] => {
                self.error(
                    at,
                    format!("the node `{name}` has both `{a}` and `{b}`: a node does one thing, so split it in two"),
                );
                return None;
            }
        };
        // Keys that belong to another kind are a mistake worth naming.
        let extra: [(&str, bool); 9] = [
            ("next", n.next.is_some()),
            ("barge-in", n.barge_in.is_some()),
            ("open", n.open.is_some()),
            ("closed", n.closed.is_some()),
            ("exhausted", n.exhausted.is_some()),
            ("on-error", n.on_error.is_some()),
            ("on-timeout", n.on_timeout.is_some()),
            ("else", n.otherwise.is_some()),
            ("priority", n.priority.is_some() || n.skills.is_some()),
        ];
        let ok = allowed(kind);
        for (key, set) in extra {
            if set && !ok.contains(&key) && !(key == "priority" && kind == "queue") {
                let takes = if ok.is_empty() {
                    "nothing more".to_owned()
                } else {
                    ok.join(", ")
                };
                let key = if key == "priority" && n.priority.is_none() {
                    "skills"
                } else {
                    key
                };
                self.error(
                    at,
                    format!("`{key}` has no meaning on a `{kind}` node (it takes: {takes})"),
                );
            }
        }
        match kind {
            "play" => {
                let list = n.play.as_ref()?;
                let say = self.say(list)?;
                if say.is_empty() {
                    self.error(&list.referenced, "`play` needs at least one prompt".into());
                }
                let next = self.required(
                    name,
                    at,
                    "next",
                    &n.next,
                    "(where the call goes after the prompt)",
                )?;
                Some(Kind::Play {
                    say,
                    barge_in: n.barge_in.unwrap_or(false),
                    next,
                })
            }
            "menu" => self
                .menu(name, at, n.menu.as_ref()?, &n.exhausted)
                .map(Kind::Menu),
            "collect" => self.collect(name, at, n).map(Kind::Collect),
            "hours" => {
                let s = n.hours.as_ref()?;
                self.listed(s, |c| &c.schedules, "schedule", "schedules", "");
                let open = self.required(
                    name,
                    at,
                    "open",
                    &n.open,
                    "(where the call goes while open)",
                );
                let closed = self.required(
                    name,
                    at,
                    "closed",
                    &n.closed,
                    "(where the call goes while closed)",
                );
                Some(Kind::Hours {
                    schedule: s.value.clone(),
                    open: open?,
                    closed: closed?,
                })
            }
            "webhook" => self.webhook(name, at, n).map(Kind::Webhook),
            "set" => {
                let mut vars = Vec::new();
                for (k, v) in &n.set.as_ref()?.0 {
                    let name = self.var_name(&k.value.0, &k.referenced);
                    let value = self.template(&v.value.0, &v.referenced);
                    if let (Some(name), Some(value)) = (name, value) {
                        vars.push((name, value));
                    }
                }
                let next =
                    self.required(name, at, "next", &n.next, "(where the call goes next)")?;
                Some(Kind::Set { vars, next })
            }
            "branch" => {
                let arms_raw = n.branch.as_ref()?;
                if arms_raw.is_empty() {
                    self.error(at, "`branch` needs at least one `- if: … then: …`".into());
                }
                let mut arms = Vec::new();
                for arm in arms_raw {
                    let e = self.expr(&arm.condition.value, &arm.condition.referenced);
                    let t = self.node_ref(&arm.then);
                    if let (Some(e), Some(t)) = (e, t) {
                        arms.push((e, t));
                    }
                }
                let otherwise = self.required(
                    name,
                    at,
                    "else",
                    &n.otherwise,
                    "(where the call goes when no condition holds)",
                )?;
                let on_error = self.optional(&n.on_error)?;
                Some(Kind::Branch {
                    arms,
                    otherwise,
                    on_error,
                })
            }
            "queue" => {
                let q = n.queue.as_ref()?;
                self.listed(q, |c| &c.queues, "queue", "queues", "");
                let priority = match &n.priority {
                    Some(p) => Some(self.template(&p.value.0, &p.referenced)?),
                    None => None,
                };
                let on_timeout = self.optional(&n.on_timeout)?;
                if on_timeout.is_none() && self.catalog.queues_turning_away.contains(&q.value) {
                    let d = self.diag(
                        &q.referenced,
                        format!(
                            "the queue `{}` may turn callers away (join-empty: false, leave-empty or max-length); without `on-timeout` they are hung up",
                            q.value
                        ),
                    );
                    self.out.push(d.warning());
                }
                Some(Kind::Queue {
                    queue: q.value.clone(),
                    priority,
                    skills: n.skills.iter().flatten().map(|s| s.value.clone()).collect(),
                    on_timeout,
                })
            }
            "transfer" => {
                let t = n.transfer.as_ref()?;
                self.listed(
                    t,
                    |c| &c.transfers,
                    "transfer target",
                    "transfers",
                    "; a flow may only transfer to targets listed there",
                );
                let on_error = self.optional(&n.on_error)?;
                Some(Kind::Transfer {
                    target: t.value.clone(),
                    on_error,
                })
            }
            "record" | "voicemail" => {
                let voicemail = kind == "voicemail";
                let r = if voicemail {
                    n.voicemail.as_ref()?
                } else {
                    n.record.as_ref()?
                };
                self.record(name, at, r, n, voicemail).map(Kind::Record)
            }
            "survey" => self.survey(name, at, n).map(Kind::Survey),
            "goto" => {
                let g = n.goto.as_ref()?;
                Some(Kind::Goto {
                    flow: g.value.clone(),
                })
            }
            "callback" => {
                let q = n.callback.as_ref()?;
                self.listed(q, |c| &c.queues, "queue", "queues", "");
                if self.catalog.queues.contains(&q.value)
                    && !self.catalog.queues_with_callback.contains(&q.value)
                {
                    self.error(
                        &q.referenced,
                        format!(
                            "the queue `{}` offers no callbacks: give it `callback:` settings (its trunk, …) in the config",
                            q.value
                        ),
                    );
                }
                let next = self.required(
                    name,
                    at,
                    "next",
                    &n.next,
                    "(where the call goes once the callback is booked)",
                );
                let on_error = self.optional(&n.on_error)?;
                Some(Kind::Callback {
                    queue: q.value.clone(),
                    next: next?,
                    on_error,
                })
            }
            "hangup" => {
                let h = n.hangup.as_ref()?;
                let list = Spanned::new(h.value.0.clone(), h.referenced, h.defined);
                Some(Kind::Hangup {
                    say: self.say(&list)?,
                })
            }
            _ => None,
        }
    }

    /// `name` as a variable name, or an error at `at`.
    fn var_name(&mut self, name: &str, at: &Location) -> Option<String> {
        if valid_var(name) {
            return Some(name.to_owned());
        }
        self.error(
            at,
            format!("`{name}` is not a variable name: use letters, digits and `_`"),
        );
        None
    }

    /// Reports `name` when the config does not list it under `section`.
    fn listed(
        &mut self,
        name: &Name,
        known: fn(&Catalog) -> &BTreeSet<String>,
        what: &str,
        section: &str,
        extra: &str,
    ) {
        let catalog = self.catalog;
        let set = known(catalog);
        if set.contains(&name.value) {
            return;
        }
        let hint = self.hint(&name.value, set);
        self.error(
            &name.referenced,
            format!(
                "there is no {what} `{}` under `{section}:` in the config{hint}{extra}",
                name.value
            ),
        );
    }

    fn hint(&self, word: &str, from: &BTreeSet<String>) -> String {
        closest(word, from.iter().map(String::as_str))
            .map(|h| format!(" (did you mean `{h}`?)"))
            .unwrap_or_default()
    }

    fn template(&mut self, src: &str, at: &Location) -> Option<Template> {
        match Template::parse(src) {
            Ok(t) => Some(t),
            Err(e) => {
                self.error(
                    at,
                    format!("in `{src}`: {} (at character {})", e.message, e.offset + 1),
                );
                None
            }
        }
    }

    fn expr(&mut self, src: &str, at: &Location) -> Option<Expr> {
        // Conditions may be written bare or inside {{ }}.
        let inner = src
            .trim()
            .strip_prefix("{{")
            .and_then(|s| s.strip_suffix("}}"))
            .unwrap_or(src);
        match Expr::parse(inner) {
            Ok(e) => Some(e),
            Err(e) => {
                self.error(
                    at,
                    format!("in `{src}`: {} (at character {})", e.message, e.offset + 1),
                );
                None
            }
        }
    }

    fn prompt(&mut self, name: &str, at: &Location) {
        if !self.catalog.prompts.contains(name) {
            let hint = self.hint(name, &self.catalog.prompts);
            self.error(
                at,
                format!("there is no prompt `{name}` in the sounds directory{hint}"),
            );
        }
    }

    fn say(&mut self, list: &Spanned<PlayList>) -> Option<Vec<Say>> {
        let at = list.referenced;
        let mut out = Vec::new();
        let mut ok = true;
        for item in &list.value.0 {
            match item {
                PlayItem::Prompt(p) => {
                    self.prompt(p, &at);
                    out.push(Say::Prompt(p.clone()));
                }
                PlayItem::Say { how, value } => {
                    let Some(t) = self.template(value, &at) else {
                        ok = false;
                        continue;
                    };
                    let needs: Vec<&str> = match how.as_str() {
                        "digits" => {
                            out.push(Say::Digits(t));
                            vec!["digits/0"]
                        }
                        "number" => {
                            out.push(Say::Number(t));
                            vec!["numbers/0", "numbers/hundred"]
                        }
                        "duration" => {
                            out.push(Say::Duration(t));
                            vec!["numbers/0", "time/minutes", "time/seconds"]
                        }
                        other => {
                            self.error(
                                &at,
                                format!(
                                    "`say: {other}` is not known: use digits, number or duration"
                                ),
                            );
                            ok = false;
                            continue;
                        }
                    };
                    for p in needs {
                        self.prompt(p, &at);
                    }
                }
            }
        }
        ok.then_some(out)
    }

    fn opt_say(&mut self, list: &Option<Spanned<PlayList>>) -> Option<Vec<Say>> {
        match list {
            Some(l) => self.say(l),
            None => Some(Vec::new()),
        }
    }

    fn menu(
        &mut self,
        name: &str,
        at: &Location,
        m: &model::RawMenu,
        exhausted: &Option<Name>,
    ) -> Option<Menu> {
        let prompt = self.opt_say(&m.prompt);
        if m.options.0.is_empty() {
            self.error(at, format!("the menu `{name}` has no `options:`"));
        }
        let mut options: Vec<(char, NodeId)> = Vec::new();
        for (key, target) in &m.options.0 {
            let k = &key.value.0;
            let mut chars = k.chars();
            let key_char = match (chars.next(), chars.next()) {
                (Some(c), None) if KEYS.contains(c) => c,
                _ => {
                    self.error(
                        &key.referenced,
                        format!("`{k}` cannot be pressed: a menu key is one of 0-9, * or # (quote * and #: \"*\")"),
                    );
                    continue;
                }
            };
            if options.iter().any(|(c, _)| *c == key_char) {
                self.error(
                    &key.referenced,
                    format!("the key `{k}` is given twice in this menu"),
                );
                continue;
            }
            if let Some(t) = self.node_ref(target) {
                options.push((key_char, t));
            }
        }
        let no_input = self.opt_say(&m.no_input);
        let invalid = self.opt_say(&m.invalid);
        let exhausted = self.required(
            name,
            at,
            "exhausted",
            exhausted,
            "(where the caller goes after the last failed attempt)",
        );
        Some(Menu {
            prompt: prompt?,
            options,
            timeout: m.timeout.map_or(Duration::from_secs(5), |d| d.0),
            retries: m.retries.unwrap_or(2),
            no_input: no_input?,
            invalid: invalid?,
            exhausted: exhausted?,
        })
    }

    fn key(&mut self, end: &Option<Spanned<Text>>, default: Option<char>) -> Option<Option<char>> {
        let Some(e) = end else {
            return Some(default);
        };
        let s = e.value.0.as_str();
        if s == "none" {
            return Some(None);
        }
        let mut chars = s.chars();
        match (chars.next(), chars.next()) {
            (Some(c), None) if KEYS.contains(c) => Some(Some(c)),
            _ => {
                self.error(
                    &e.referenced,
                    format!("`{s}` is not a key: use one of 0-9, * or # (quoted), or `none`"),
                );
                None
            }
        }
    }

    fn collect(&mut self, name: &str, at: &Location, n: &RawNode) -> Option<Collect> {
        let c = n.collect.as_ref()?;
        let prompt = self.opt_say(&c.prompt);
        let into = match &c.into {
            Some(v) => self.var_name(&v.value, &v.referenced),
            None => {
                self.error(
                    at,
                    format!(
                        "the node `{name}` needs `into:` (the variable that receives the digits)"
                    ),
                );
                None
            }
        };
        let pattern = match &c.pattern {
            Some(p) => match DigitPattern::parse(&p.value) {
                Ok(p) => Some(p),
                Err(e) => {
                    self.error(&p.referenced, format!("the pattern `{}`: {e}", p.value));
                    return None;
                }
            },
            None => None,
        };
        let (pmin, pmax) = pattern.as_ref().map_or((1, None), |p| p.lengths());
        let min = c.min.as_ref().map_or(pmin.max(1), |m| m.value as usize);
        let max = c
            .max
            .as_ref()
            .map_or(pmax.unwrap_or(20).max(min), |m| m.value as usize);
        let min_at = c.min.as_ref().map_or(*at, |m| m.referenced);
        if min == 0 {
            self.error(&min_at, "`min` is at least 1".into());
        }
        if max < min {
            let at = c.max.as_ref().map_or(*at, |m| m.referenced);
            self.error(
                &at,
                format!("`max` ({max}) is below `min` ({min}): no entry could ever be valid"),
            );
        }
        if max > 64 {
            let at = c.max.as_ref().map_or(*at, |m| m.referenced);
            self.error(&at, format!("`max` ({max}) is more than 64 digits"));
        }
        if let (Some(p), Some(pat)) = (&pattern, &c.pattern) {
            let (lo, hi) = p.lengths();
            if hi.is_some_and(|hi| hi < min) || lo > max {
                self.error(
                    &pat.referenced,
                    format!("the pattern `{p}` never matches between {min} and {max} digits"),
                );
            }
        }
        let end = self.key(&c.end, Some('#'))?;
        let no_input = self.opt_say(&c.no_input);
        let invalid = self.opt_say(&c.invalid);
        let next = self.required(
            name,
            at,
            "next",
            &n.next,
            "(where the call goes with the digits)",
        );
        let exhausted = self.required(
            name,
            at,
            "exhausted",
            &n.exhausted,
            "(where the caller goes after the last failed attempt)",
        );
        if c.confirm == Some(true) {
            for p in ["ask/you-entered", "ask/confirm-entry", "digits/0"] {
                self.prompt(p, at);
            }
        }
        Some(Collect {
            prompt: prompt?,
            into: into?,
            min,
            max,
            end,
            timeout: c.timeout.map_or(Duration::from_secs(5), |d| d.0),
            inter_digit_timeout: c
                .inter_digit_timeout
                .map_or(Duration::from_secs(3), |d| d.0),
            pattern,
            retries: c.retries.unwrap_or(2),
            confirm: c.confirm.unwrap_or(false),
            sensitive: c.sensitive.unwrap_or(false),
            no_input: no_input?,
            invalid: invalid?,
            next: next?,
            exhausted: exhausted?,
        })
    }

    fn webhook(&mut self, name: &str, at: &Location, n: &RawNode) -> Option<Webhook> {
        let w = n.webhook.as_ref()?;
        let url = match &w.url {
            Some(u) => {
                let t = self.template(&u.value, &u.referenced);
                let lower = u.value.to_ascii_lowercase();
                if !(lower.starts_with("http://") || lower.starts_with("https://")) {
                    self.error(
                        &u.referenced,
                        format!("`{}` is not an http:// or https:// URL", u.value),
                    );
                }
                t
            }
            None => {
                self.error(at, format!("the webhook `{name}` needs `url:`"));
                None
            }
        };
        let method = match w
            .method
            .as_ref()
            .map(|m| (m.value.to_ascii_uppercase(), m.referenced))
        {
            None => Some(if w.body.is_some() {
                Method::Post
            } else {
                Method::Get
            }),
            Some((m, _)) if m == "GET" => Some(Method::Get),
            Some((m, _)) if m == "POST" => Some(Method::Post),
            Some((m, at)) => {
                self.error(
                    &at,
                    format!("`{m}` is not a method a webhook uses: GET or POST"),
                );
                None
            }
        };
        let headers = self.pairs(&w.headers);
        let body = match &w.body {
            Some(b) => Some(self.pairs(b)?),
            None => None,
        };
        let into = match &w.into {
            Some(v) => Some(self.var_name(&v.value, &v.referenced)?),
            None => None,
        };
        let next = self.required(
            name,
            at,
            "next",
            &n.next,
            "(where the call goes when the webhook answers)",
        );
        let on_error = self.optional(&n.on_error);
        let on_timeout = self.optional(&n.on_timeout);
        Some(Webhook {
            method: method?,
            url: url?,
            headers: headers?,
            body,
            into,
            timeout: w.timeout.map_or(Duration::from_secs(3), |d| d.0),
            next: next?,
            on_error: on_error?,
            on_timeout: on_timeout?,
        })
    }

    fn pairs(&mut self, e: &Entries<Spanned<Text>>) -> Option<Vec<(String, Template)>> {
        let mut out = Vec::new();
        let mut ok = true;
        for (k, v) in &e.0 {
            match self.template(&v.value.0, &v.referenced) {
                Some(t) => out.push((k.value.0.clone(), t)),
                None => ok = false,
            }
        }
        ok.then_some(out)
    }

    fn record(
        &mut self,
        name: &str,
        at: &Location,
        r: &model::RawRecord,
        n: &RawNode,
        voicemail: bool,
    ) -> Option<Record> {
        let prompt = self.opt_say(&r.prompt);
        let beep = r.beep.unwrap_or(true);
        if beep {
            self.prompt("beep", at);
        }
        let kind = if voicemail {
            if r.into.is_some() {
                self.error(
                    at,
                    "`into` belongs to `record`; a voicemail goes to a `mailbox`".into(),
                );
            }
            RecordKind::Voicemail {
                mailbox: r
                    .mailbox
                    .as_ref()
                    .map_or_else(|| "default".to_owned(), |m| m.value.clone()),
            }
        } else {
            if r.mailbox.is_some() {
                self.error(
                    at,
                    "`mailbox` belongs to `voicemail`; a recording goes `into` a variable".into(),
                );
            }
            match &r.into {
                Some(v) => RecordKind::Recording {
                    into: self.var_name(&v.value, &v.referenced)?,
                },
                None => {
                    self.error(at, format!("the node `{name}` needs `into:` (the variable that receives the recording's path)"));
                    return None;
                }
            }
        };
        let end = self.key(&r.end, Some('#'))?;
        let next = self.required(
            name,
            at,
            "next",
            &n.next,
            "(where the call goes after the recording)",
        );
        let on_error = self.optional(&n.on_error);
        Some(Record {
            prompt: prompt?,
            beep,
            max: r.max.map_or(Duration::from_secs(120), |d| d.0),
            end,
            kind,
            next: next?,
            on_error: on_error?,
        })
    }

    fn survey(&mut self, name: &str, at: &Location, n: &RawNode) -> Option<Survey> {
        let s = n.survey.as_ref()?;
        let prompt = match &s.prompt {
            Some(p) => self.say(p),
            None => {
                self.error(
                    at,
                    format!("the survey `{name}` needs `prompt:` (the question the caller hears)"),
                );
                None
            }
        };
        let into = match &s.into {
            Some(v) => Some(self.var_name(&v.value, &v.referenced)?),
            None => None,
        };
        let no_input = self.opt_say(&s.no_input);
        let invalid = self.opt_say(&s.invalid);
        let next = self.required(
            name,
            at,
            "next",
            &n.next,
            "(where the call goes after the answer)",
        );
        Some(Survey {
            prompt: prompt?,
            question: s
                .question
                .as_ref()
                .map_or_else(|| "nps".to_owned(), |q| q.value.clone()),
            into,
            timeout: s.timeout.map_or(Duration::from_secs(5), |d| d.0),
            retries: s.retries.unwrap_or(1),
            no_input: no_input?,
            invalid: invalid?,
            next: next?,
        })
    }
}

fn valid_var(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !matches!(s, "true" | "false" | "null" | "and" | "or" | "not")
}
