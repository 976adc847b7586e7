//! Authorization of a new event with `ruma::state_res`: the state-independent rules
//! (against its auth events) and the state-dependent rules (against the current state).

use ruma::{
    EventId,
    events::StateEventType,
    room_version_rules::AuthorizationRules,
    state_res::{check_state_dependent_auth_rules, check_state_independent_auth_rules},
};

use super::{Error, Pdu};

pub fn authorize(
    rules: &AuthorizationRules,
    pdu: &Pdu,
    fetch_event: impl Fn(&EventId) -> Option<Pdu>,
    fetch_state: impl Fn(&StateEventType, &str) -> Option<Pdu>,
) -> Result<(), Error> {
    check_state_independent_auth_rules(rules, pdu, fetch_event).map_err(refusal)?;
    check_state_dependent_auth_rules(rules, pdu, fetch_state).map_err(refusal)?;
    Ok(())
}

/// ruma explains refusals in the spec's terms ("sender's power level is lower than..."),
/// which is what a person needs to see.
fn refusal(reason: String) -> Error {
    Error::Forbidden(format!("The room's rules refuse this event: {reason}"))
}
