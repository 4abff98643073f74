//! The demo line's behaviour until the flow engine routes calls: greet, say
//! each key pressed back, and say goodbye on `#`.

use super::Step;
use crate::config::DemoConfig;
use crate::media::Digit;

/// Greets the caller and echoes every digit as its spoken prompt.
#[derive(Debug)]
pub struct EchoDemo {
    welcome: String,
}

impl EchoDemo {
    pub fn new(config: &DemoConfig) -> EchoDemo {
        EchoDemo {
            welcome: config.welcome.clone(),
        }
    }

    pub fn on_answer(&self) -> Step {
        Step::Play(self.welcome.clone())
    }

    pub fn on_digit(&self, digit: Digit) -> Step {
        match digit.as_char() {
            '#' => Step::PlayThenHangUp("goodbye".into()),
            c => Step::Play(prompt_for(c)),
        }
    }
}

/// The shipped prompt that speaks a key: `digits/5`, `digits/star`.
pub fn prompt_for(key: char) -> String {
    match key {
        '*' => "digits/star".into(),
        '#' => "digits/pound".into(),
        c => format!("digits/{}", c.to_ascii_lowercase()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn echoes_digits_and_ends_on_pound() {
        let demo = EchoDemo::new(&DemoConfig::default());
        assert_eq!(demo.on_answer(), Step::Play("welcome".into()));
        let d = |c| Digit::from_char(c).unwrap();
        assert_eq!(demo.on_digit(d('7')), Step::Play("digits/7".into()));
        assert_eq!(demo.on_digit(d('*')), Step::Play("digits/star".into()));
        assert_eq!(
            demo.on_digit(d('#')),
            Step::PlayThenHangUp("goodbye".into())
        );
    }
}
