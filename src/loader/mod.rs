//! Loading and checking what the engine runs on: prompts, flows, and the
//! queues' references to them; the version new calls take ([`running`]);
//! and reloading the config and flows while it runs ([`reload`]). Used by `run`, `validate`, `simulate` and the API.

pub mod reload;
pub mod running;

use std::path::Path;

use tracing::warn;

use crate::config::Config;
use crate::flow::{self, FlowSet};
use crate::media::prompt::PromptError;
use crate::media::PromptCache;

/// Why what the config names could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error(transparent)]
    Prompts(#[from] PromptError),
    #[error("the flows are not valid:\n{0}")]
    Flows(String),
    #[error("{0}")]
    Queues(String),
}

/// Loads every prompt under the sounds directory.
pub fn load_prompts(config: &Config) -> Result<PromptCache, LoadError> {
    Ok(PromptCache::load_dir(&config.sounds_dir)?)
}

/// Loads and checks the flows against the config and the prompts; warnings
/// are logged, errors refuse the set.
pub fn load_flows(
    config: &Config,
    config_path: &Path,
    prompts: &PromptCache,
    version: u64,
) -> Result<FlowSet, LoadError> {
    check_queue_prompts(config, config_path, prompts)?;
    let names = prompts.names().map(str::to_owned).collect();
    let catalog = flow::set::catalog(config, names);
    let loaded = flow::set::load(config, config_path, &catalog, version);
    for d in loaded.diagnostics.iter().filter(|d| !d.is_error()) {
        warn!("{d}");
    }
    if let Some(set) = &loaded.set {
        check_queue_flows(config, config_path, set)?;
    }
    loaded.set.ok_or_else(|| {
        LoadError::Flows(
            loaded
                .diagnostics
                .iter()
                .filter(|d| d.is_error())
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("\n"),
        )
    })
}

/// A queue's survey flow must be one of the flows.
pub fn check_queue_flows(
    config: &Config,
    config_path: &Path,
    set: &FlowSet,
) -> Result<(), LoadError> {
    let missing: Vec<String> = config
        .queues
        .iter()
        .filter_map(|(name, q)| {
            let survey = q.survey.as_ref()?;
            set.flow(survey).is_none().then(|| {
                format!(
                    "{}: queues.{name}.survey: there is no flow `{survey}` in {}",
                    config_path.display(),
                    config.flows_dir.display()
                )
            })
        })
        .collect();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(LoadError::Queues(missing.join("\n")))
    }
}

/// Every prompt a queue names (greeting, music, message) must exist: a
/// caller must never wait in silence because of a typo.
pub fn check_queue_prompts(
    config: &Config,
    config_path: &Path,
    prompts: &PromptCache,
) -> Result<(), LoadError> {
    let mut missing = Vec::new();
    for (name, q) in &config.queues {
        let named = [
            ("greeting", q.greeting.as_ref()),
            ("music", Some(&q.music)),
            ("message", q.message.as_ref()),
        ];
        // The callback offer speaks these (and digits, minutes).
        const CALLBACK: [&str; 10] = [
            "callback/offer",
            "callback/confirm-number",
            "callback/press-1-correct",
            "callback/enter-number",
            "callback/refused",
            "callback/booked",
            "callback/this-is",
            "callback/for",
            "callback/waited",
            "digits/0",
        ];
        let callback_prompts = q
            .callback
            .as_ref()
            .map_or(&[][..], |_| &CALLBACK[..])
            .iter()
            .map(|p| ("callback", Some(*p)));
        let named = named
            .into_iter()
            .map(|(k, p)| (k, p.map(String::as_str)))
            .chain(callback_prompts);
        for (key, prompt) in named {
            if let Some(p) = prompt.filter(|p| prompts.get(p).is_none()) {
                missing.push(format!(
                    "{}: queues.{name}.{key}: there is no prompt `{p}` under {}",
                    config_path.display(),
                    config.sounds_dir.display()
                ));
            }
        }
    }
    if missing.is_empty() {
        Ok(())
    } else {
        Err(LoadError::Queues(missing.join("\n")))
    }
}
