//! Prompts played one after another on a media channel, so a flow's
//! "you entered 1 2 3 4" plays as one sequence and reports its end once.
//! Each prompt stays a shared, pre-encoded `Arc<Prompt>`: nothing is copied.
//!
//! Pure: it says what the channel should do ([`PlayOp`]) and numbers the
//! prompts itself; [`apply`] carries the operations out on a channel.

use std::collections::VecDeque;
use std::sync::Arc;

use tracing::warn;

use crate::media::{MediaChannel, Prompt, PromptCache};

/// What the media channel is asked to do.
#[derive(Debug, Clone)]
pub enum PlayOp {
    /// Play this prompt (replacing what plays); its end carries `token`.
    Play { prompt: Arc<Prompt>, token: u64 },
    /// Loop this music until stopped.
    Music(Arc<Prompt>),
    /// Silence.
    Stop,
}

impl PartialEq for PlayOp {
    fn eq(&self, other: &PlayOp) -> bool {
        match (self, other) {
            (
                PlayOp::Play {
                    prompt: a,
                    token: x,
                },
                PlayOp::Play {
                    prompt: b,
                    token: y,
                },
            ) => a.name == b.name && x == y,
            (PlayOp::Music(a), PlayOp::Music(b)) => a.name == b.name,
            (PlayOp::Stop, PlayOp::Stop) => true,
            _ => false,
        }
    }
}

/// Carries out a playlist's operations on `media`.
pub async fn apply(media: &MediaChannel, ops: impl IntoIterator<Item = PlayOp>) {
    for op in ops {
        match op {
            PlayOp::Play { prompt, token } => media.play(prompt, token).await,
            PlayOp::Music(prompt) => media.play_music(prompt).await,
            PlayOp::Stop => media.stop().await,
        }
    }
}

#[derive(Default)]
pub struct Playlist {
    /// The flow's token for the whole sequence.
    token: Option<u64>,
    rest: VecDeque<Arc<Prompt>>,
    /// The media token of the prompt playing now.
    playing: Option<u64>,
    /// Looped once the sequence ends (hold music).
    then_loop: Option<Arc<Prompt>>,
    /// The last media token given out.
    last_token: u64,
}

impl Playlist {
    /// Plays `names` in order, replacing what plays. Returns `Some(token)`
    /// when there is nothing to play, so the flow moves on at once.
    pub fn start(
        &mut self,
        token: u64,
        names: Vec<String>,
        cache: &PromptCache,
        out: &mut Vec<PlayOp>,
    ) -> Option<u64> {
        self.rest = resolve(names, cache);
        self.then_loop = None;
        self.token = Some(token);
        self.advance(out)
    }

    /// Plays `names`, then loops `music` until stopped.
    pub fn start_then_loop(
        &mut self,
        names: Vec<String>,
        music: String,
        cache: &PromptCache,
        out: &mut Vec<PlayOp>,
    ) {
        self.rest = resolve(names, cache);
        self.then_loop = resolve(vec![music], cache).pop_front();
        self.token = None;
        self.advance(out);
    }

    /// A prompt ended; `Some(token)` when it was the sequence's last.
    pub fn on_done(&mut self, media_token: u64, out: &mut Vec<PlayOp>) -> Option<u64> {
        if self.playing != Some(media_token) {
            return None;
        }
        self.playing = None;
        self.advance(out)
    }

    /// Whether a prompt (not the music) is playing.
    pub fn busy(&self) -> bool {
        self.playing.is_some()
    }

    pub fn stop(&mut self, out: &mut Vec<PlayOp>) {
        out.push(PlayOp::Stop);
        self.rest.clear();
        self.then_loop = None;
        self.playing = None;
        self.token = None;
    }

    fn advance(&mut self, out: &mut Vec<PlayOp>) -> Option<u64> {
        if let Some(prompt) = self.rest.pop_front() {
            metrics::counter!("hotline_prompt_plays_total").increment(1);
            self.last_token += 1;
            self.playing = Some(self.last_token);
            out.push(PlayOp::Play {
                prompt,
                token: self.last_token,
            });
            return None;
        }
        if let Some(music) = self.then_loop.take() {
            out.push(PlayOp::Music(music));
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
