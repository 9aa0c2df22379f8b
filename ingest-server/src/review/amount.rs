//! The amount a police confirmation charges: the middle of the legal
//! range ([`decided_amount`]), or another amount the officer sets on a
//! single case ([`chosen_amount`]) within the range, in whole thousands,
//! with a reason stating the circumstance (Law on Handling Administrative
//! Violations, Art. 23: mitigating below the middle, aggravating above).

use thiserror::Error;

/// Why an amount set at confirmation, other than the middle of the range,
/// is refused (Law on Handling Administrative Violations, Art. 23).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum AmountRefused {
    /// Outside the case's legal range.
    #[error("the amount {amount} VND is outside the legal range of this case ({min} to {max} VND)")]
    OutOfRange {
        /// What was asked.
        amount: i64,
        /// The range's minimum.
        min: i64,
        /// The range's maximum.
        max: i64,
    },
    /// Not whole thousands of VND.
    #[error("the amount {0} VND is not whole thousands of VND")]
    NotWholeThousands(i64),
    /// Another amount than the middle without a reason stating the
    /// circumstance.
    #[error(
        "an amount other than the middle of the range ({middle} VND) needs a reason stating the \
         mitigating or aggravating circumstance"
    )]
    ReasonRequired {
        /// The middle of the range.
        middle: i64,
    },
}

/// Why the fine differs from the middle of the range: below it for a
/// mitigating circumstance, above it for an aggravating one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Circumstance {
    /// The middle of the range.
    None,
    /// Lowered, not below the minimum.
    Mitigating,
    /// Raised, not above the maximum.
    Aggravating,
}

impl Circumstance {
    /// Its name in the audit entry (`detail.circumstance`).
    pub fn as_str(self) -> &'static str {
        match self {
            Circumstance::None => "none",
            Circumstance::Mitigating => "mitigating",
            Circumstance::Aggravating => "aggravating",
        }
    }

    /// By its name in the audit entry.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "none" => Circumstance::None,
            "mitigating" => Circumstance::Mitigating,
            "aggravating" => Circumstance::Aggravating,
            _ => return None,
        })
    }
}

/// The fine a confirmation charges: the middle of the legal range `range`
/// ([`decided_amount`]) unless the officer set `asked`, which must lie in
/// the range, be whole thousands of VND and, where it is not the middle,
/// come with `reason` (stating the circumstance). Returns the amount, the
/// middle and the circumstance; `Ok(None)` when no range is priced.
pub fn chosen_amount(
    range: Option<(i64, i64)>,
    asked: Option<i64>,
    reason: &str,
) -> Result<Option<(i64, i64, Circumstance)>, AmountRefused> {
    let (Some(middle), Some((min, max))) = (decided_amount(range), range) else {
        return Ok(None);
    };
    let Some(amount) = asked else {
        return Ok(Some((middle, middle, Circumstance::None)));
    };
    if amount < min || amount > max {
        return Err(AmountRefused::OutOfRange { amount, min, max });
    }
    if amount % 1000 != 0 {
        return Err(AmountRefused::NotWholeThousands(amount));
    }
    let circumstance = match amount.cmp(&middle) {
        std::cmp::Ordering::Equal => Circumstance::None,
        std::cmp::Ordering::Less => Circumstance::Mitigating,
        std::cmp::Ordering::Greater => Circumstance::Aggravating,
    };
    if circumstance != Circumstance::None && reason.trim().is_empty() {
        return Err(AmountRefused::ReasonRequired { middle });
    }
    Ok(Some((amount, middle, circumstance)))
}

/// The fine fixed at confirmation unless the officer sets another amount
/// ([`chosen_amount`]): the middle of the legal range, rounded
/// down to whole thousands of VND (the schedule's amounts are all whole
/// thousands). `None` when no range is priced.
pub fn decided_amount(range: Option<(i64, i64)>) -> Option<i64> {
    let (min, max) = range?;
    if min <= 0 || max < min {
        return None;
    }
    Some((min + (max - min) / 2) / 1000 * 1000)
}
