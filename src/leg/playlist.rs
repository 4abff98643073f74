//! Prompts played one after another on a call's media channel, so a flow's
//! "you entered 1 2 3 4" plays as one sequence and reports its end once.
//! Each prompt stays a shared, pre-encoded `Arc<Prompt>`: nothing is copied.

use std::collections::VecDeque;
use std::sync::Arc;

use tracing::warn;

use crate::media::{MediaChannel, Prompt, PromptCache};

#[derive(Default)]
pub struct Playlist {
    /// The flow's token for the whole sequence.
    token: Option<u64>,
    rest: VecDeque<Arc<Prompt>>,
    /// The media token of the prompt playing now.
    playing: Option<u64>,
    /// Looped once the sequence ends (hold music).
    then_loop: Option<Arc<Prompt>>,
}

impl Playlist {
    /// Plays `names` in order, replacing what plays. Returns `Some(token)`
    /// when there is nothing to play, so the flow moves on at once.
    pub fn start(
        &mut self,
        token: u64,
        names: Vec<String>,
        media: &mut MediaChannel,
        cache: &PromptCache,
    ) -> Option<u64> {
        self.rest = resolve(names, cache);
        self.then_loop = None;
        self.token = Some(token);
        self.advance(media)
    }

    /// Plays `names`, then loops `music` until stopped.
    pub fn start_then_loop(
        &mut self,
        names: Vec<String>,
        music: String,
        media: &mut MediaChannel,
        cache: &PromptCache,
    ) {
        self.rest = resolve(names, cache);
        self.then_loop = resolve(vec![music], cache).pop_front();
        self.token = None;
        self.advance(media);
    }

    /// A prompt ended; `Some(token)` when it was the sequence's last.
    pub fn on_done(
        &mut self,
        media_token: u64,
        media: &mut MediaChannel,
        _cache: &PromptCache,
    ) -> Option<u64> {
        if self.playing != Some(media_token) {
            return None;
        }
        self.playing = None;
        self.advance(media)
    }

    /// Whether a prompt (not the music) is playing.
    pub fn busy(&self) -> bool {
        self.playing.is_some()
    }

    pub fn stop(&mut self, media: &MediaChannel) {
        media.stop();
        self.rest.clear();
        self.then_loop = None;
        self.playing = None;
        self.token = None;
    }

    fn advance(&mut self, media: &mut MediaChannel) -> Option<u64> {
        if let Some(p) = self.rest.pop_front() {
            metrics::counter!("hotline_prompt_plays_total").increment(1);
            self.playing = Some(media.play(p));
            return None;
        }
        if let Some(music) = self.then_loop.take() {
            media.play_music(music);
        }
        self.token.take()
    }
}

fn resolve(names: Vec<String>, cache: &PromptCache) -> VecDeque<Arc<Prompt>> {
    names
        .into_iter()
        .filter_map(|n| {
            let p = cache.get(&n);
            if p.is_none() {
                // The validator checks every prompt a flow names, so this
                // is a prompt spoken from a value (a digit, a number).
                warn!(prompt = %n, "prompt not found; skipped");
            }
            p
        })
        .collect()
}
