//! A checked flow: nodes by index, every reference resolved, every
//! expression parsed. Only [`super::compile`] builds one.

use std::path::PathBuf;
use std::time::Duration;

use super::digits::DigitPattern;
use super::expr::{Expr, Template};

pub type NodeId = usize;

#[derive(Debug, Clone)]
pub struct Flow {
    pub name: String,
    pub path: PathBuf,
    pub entry: NodeId,
    pub on_error: Option<NodeId>,
    pub nodes: Vec<Node>,
}

impl Flow {
    pub fn node_named(&self, name: &str) -> Option<NodeId> {
        self.nodes.iter().position(|n| n.name == name)
    }
}

#[derive(Debug, Clone)]
pub struct Node {
    pub name: String,
    /// Where the node is defined (1-based), for run-time log lines.
    pub line: u64,
    pub kind: Kind,
}

/// Something to say: a prompt, or a value spoken with the shipped prompts.
#[derive(Debug, Clone, PartialEq)]
pub enum Say {
    Prompt(String),
    Digits(Template),
    Number(Template),
    Duration(Template),
}

#[derive(Debug, Clone)]
pub enum Kind {
    Play {
        say: Vec<Say>,
        barge_in: bool,
        next: NodeId,
    },
    Menu(Menu),
    Collect(Collect),
    Hours {
        schedule: String,
        open: NodeId,
        closed: NodeId,
    },
    Webhook(Webhook),
    Set {
        vars: Vec<(String, Template)>,
        next: NodeId,
    },
    Branch {
        arms: Vec<(Expr, NodeId)>,
        otherwise: NodeId,
        on_error: Option<NodeId>,
    },
    Queue {
        queue: String,
        priority: Option<Template>,
        skills: Vec<String>,
        /// Where the caller goes when the queue's `max-wait` passes.
        on_timeout: Option<NodeId>,
    },
    Transfer {
        target: String,
        /// Where the call goes when the target is busy, does not answer
        /// or cannot be reached.
        on_error: Option<NodeId>,
    },
    Record(Record),
    Survey(Survey),
    Goto {
        flow: String,
    },
    Hangup {
        say: Vec<Say>,
    },
    /// Books a callback: the caller's number is read back for them to
    /// confirm (or they type another); it waits in `queue` from now.
    Callback {
        queue: String,
        /// Booked.
        next: NodeId,
        /// Not booked: no number the trunk may call, or no answer.
        on_error: Option<NodeId>,
    },
}

impl Kind {
    /// Nodes that take time or wait for the caller. A loop made only of
    /// nodes that do not would spin forever, so the validator refuses it.
    pub fn waits(&self) -> bool {
        !matches!(
            self,
            Kind::Hours { .. }
                | Kind::Webhook(_)
                | Kind::Set { .. }
                | Kind::Branch { .. }
                | Kind::Goto { .. }
        )
    }

    /// The nodes this one may go to, in the same flow.
    pub fn successors(&self) -> Vec<NodeId> {
        match self {
            Kind::Play { next, .. } | Kind::Set { next, .. } => vec![*next],
            Kind::Menu(m) => m
                .options
                .iter()
                .map(|(_, n)| *n)
                .chain([m.exhausted])
                .collect(),
            Kind::Collect(c) => vec![c.next, c.exhausted],
            Kind::Hours { open, closed, .. } => vec![*open, *closed],
            Kind::Webhook(w) => [Some(w.next), w.on_error, w.on_timeout]
                .into_iter()
                .flatten()
                .collect(),
            Kind::Branch {
                arms,
                otherwise,
                on_error,
            } => arms
                .iter()
                .map(|(_, n)| *n)
                .chain([*otherwise])
                .chain(*on_error)
                .collect(),
            Kind::Record(r) => [Some(r.next), r.on_error].into_iter().flatten().collect(),
            Kind::Survey(s) => vec![s.next],
            Kind::Transfer { on_error, .. } => on_error.iter().copied().collect(),
            Kind::Queue { on_timeout, .. } => on_timeout.iter().copied().collect(),
            Kind::Callback { next, on_error, .. } => {
                [Some(*next), *on_error].into_iter().flatten().collect()
            }
            Kind::Goto { .. } | Kind::Hangup { .. } => vec![],
        }
    }
}

#[derive(Debug, Clone)]
pub struct Menu {
    pub prompt: Vec<Say>,
    pub options: Vec<(char, NodeId)>,
    pub timeout: Duration,
    /// How many more times the menu is offered after a failed attempt.
    pub retries: u32,
    pub no_input: Vec<Say>,
    pub invalid: Vec<Say>,
    pub exhausted: NodeId,
}

#[derive(Debug, Clone)]
pub struct Collect {
    pub prompt: Vec<Say>,
    pub into: String,
    pub min: usize,
    pub max: usize,
    pub end: Option<char>,
    pub timeout: Duration,
    pub inter_digit_timeout: Duration,
    pub pattern: Option<DigitPattern>,
    pub retries: u32,
    pub confirm: bool,
    /// Card data: see [`crate::flow::Run::public_vars`].
    pub sensitive: bool,
    pub no_input: Vec<Say>,
    pub invalid: Vec<Say>,
    pub next: NodeId,
    pub exhausted: NodeId,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Get,
    Post,
}

#[derive(Debug, Clone)]
pub struct Webhook {
    pub method: Method,
    pub url: Template,
    pub headers: Vec<(String, Template)>,
    pub body: Option<Vec<(String, Template)>>,
    pub into: Option<String>,
    pub timeout: Duration,
    pub next: NodeId,
    pub on_error: Option<NodeId>,
    pub on_timeout: Option<NodeId>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordKind {
    /// A recording whose path goes into a variable.
    Recording { into: String },
    /// A voicemail left in a mailbox.
    Voicemail { mailbox: String },
}

#[derive(Debug, Clone)]
pub struct Record {
    pub prompt: Vec<Say>,
    pub beep: bool,
    pub max: Duration,
    pub end: Option<char>,
    pub kind: RecordKind,
    pub next: NodeId,
    pub on_error: Option<NodeId>,
}

#[derive(Debug, Clone)]
pub struct Survey {
    pub prompt: Vec<Say>,
    pub question: String,
    pub into: Option<String>,
    pub timeout: Duration,
    pub retries: u32,
    pub no_input: Vec<Say>,
    pub invalid: Vec<Say>,
    pub next: NodeId,
}
