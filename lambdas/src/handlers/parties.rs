//! The party routes — `createParty`, `joinParty`, `leaveParty`, `kickFromParty`, `setReady` — and
//! what a party changes about `matchmake`, `$connect` and `$disconnect`.
//!
//! Every change reads the party, decides with a pure function of what it read, and writes one
//! conditional [`PartyChange`]; a lost race reads again. So a party never holds more than its
//! limit or a player twice, whatever arrives at once. After a change every member gets
//! `PartyUpdated`, and whoever left gets `PartyLeft`.

use std::collections::BTreeMap;

use aws_lambda_events::apigw::ApiGatewayProxyResponse;
use matchgate_protocol::party::PartyMemberView;
use matchgate_protocol::{ClientAction, ErrorCode, Push};

use super::{Caller, ok, push_to, push_to_player};
use crate::deps::INVITE_LOOKUP_WINDOW;
use crate::error::unexpected_action;
use crate::ports::{PartyChange, PartyMember, PartyRecord, PartyWrite, Player, StoreError};
use crate::{Deps, HandlerError};

/// How often a party write is retried after losing a race.
const MAX_WRITE_ATTEMPTS: usize = 8;

/// A party whose `activeTicketId` names no ticket yet is starting matchmaking (the leader's
/// `matchmake` writes the party before the ticket) for this long after its last write: API
/// Gateway's 29 s integration timeout bounds that `matchmake`.
const MATCHMAKING_START_BOUND_MS: i64 = 30_000;

/// Why an action is refused: the caller gets it as an `Error` push and nothing is written.
#[derive(Debug, Clone, PartialEq)]
pub struct Refusal {
    pub code: ErrorCode,
    pub message: String,
    pub ticket_id: Option<String>,
}

impl Refusal {
    fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self { code, message: message.into(), ticket_id: None }
    }

    fn live_ticket(ticket_id: &str) -> Self {
        Self {
            code: ErrorCode::Conflict,
            message: "the party is matchmaking: it cannot change until its ticket ends".into(),
            ticket_id: Some(ticket_id.to_owned()),
        }
    }

    fn push(self) -> Push {
        Push::Error { code: self.code, message: self.message, ticket_id: self.ticket_id }
    }
}

/// The same answer for a party that does not exist and for another's: nothing leaks.
fn not_in_a_party() -> Refusal {
    Refusal::new(ErrorCode::NotFound, "you are not in that party")
}

/// A decided change and who hears what about it.
#[derive(Debug, Clone, PartialEq)]
pub struct Decided {
    pub change: PartyChange,
    /// For the members' `PartyUpdated`.
    pub reason: Option<String>,
    /// Who left, and why (their `PartyLeft`).
    pub left: Vec<(String, String)>,
    /// A live ticket the change cancels for every member.
    pub stop_ticket: Option<String>,
}

/// What the caller's party looks like when a change is decided.
#[derive(Debug, Clone)]
pub struct Own {
    /// The party, without members whose disconnect grace has run out.
    pub party: PartyRecord,
    /// The version read, which the write is conditional on.
    pub read_version: u64,
    /// Members whose disconnect grace has run out: they leave with this change.
    pub lapsed: Vec<String>,
    /// The party's live ticket, if it is matchmaking.
    pub live_ticket: Option<String>,
    pub now: i64,
}

// ------------------------------------------------------------------------------------------------
// Decisions: pure functions of what was read
// ------------------------------------------------------------------------------------------------

fn new_member(player_id: &str, now: i64) -> PartyMember {
    PartyMember {
        player_id: player_id.to_owned(),
        joined_at: now,
        ready: false,
        latency_in_ms: BTreeMap::new(),
        disconnected_at: None,
    }
}

/// Drops members away longer than the grace; the longest-standing remaining member leads if the
/// leader was one of them.
fn without_lapsed(party: &PartyRecord, now: i64, grace_ms: i64) -> (PartyRecord, Vec<String>) {
    let mut kept = party.clone();
    let lapsed: Vec<String> = party
        .members
        .iter()
        .filter(|m| m.disconnected_at.is_some_and(|at| now - at >= grace_ms))
        .map(|m| m.player_id.clone())
        .collect();
    kept.members.retain(|m| !lapsed.contains(&m.player_id));
    hand_on_leadership(&mut kept);
    (kept, lapsed)
}

/// A leader who is gone hands the party to the longest-standing member (the first in joining
/// order).
fn hand_on_leadership(party: &mut PartyRecord) {
    if !party.is_member(&party.leader_id)
        && let Some(first) = party.members.first()
    {
        party.leader_id = first.player_id.clone();
    }
}

/// The change that writes `party` over what `own` read, with `leaving` (and the lapsed members)
/// leaving and `joining` entering: version, TTLs and invite expiry move on; a party left empty is
/// deleted.
fn change(
    own: &Own,
    mut party: PartyRecord,
    joining: Vec<(String, Option<String>)>,
    leaving: Vec<String>,
    deps: &Deps,
) -> PartyChange {
    let now = own.now;
    party.version = own.read_version + 1;
    party.updated_at = now;
    party.expires_at = (now + deps.settings.party_ttl.as_millis() as i64) / 1000;
    party.invite_expires_at = (now + deps.settings.invite_ttl.as_millis() as i64) / 1000;
    if own.live_ticket.is_none() {
        party.active_ticket_id = None;
    }
    let mut leaving = leaving;
    leaving.extend(own.lapsed.iter().cloned());
    let write = if party.members.is_empty() {
        PartyWrite::Delete { expected_version: own.read_version }
    } else {
        PartyWrite::Replace { expected_version: own.read_version }
    };
    PartyChange { party, write, joining, leaving }
}

fn lapsed_notes(own: &Own) -> Vec<(String, String)> {
    own.lapsed.iter().map(|p| (p.clone(), "you were away longer than the disconnect grace".to_owned())).collect()
}

/// `joinParty`: the caller (`pointer` is their party pointer as read, naming no live party that
/// lists them) joins `own.party`.
pub fn decide_join(own: &Own, player_id: &str, pointer: Option<String>, deps: &Deps) -> Result<Decided, Refusal> {
    let party = &own.party;
    if party.is_member(player_id) {
        return Err(Refusal::new(ErrorCode::Conflict, "you are already in this party"));
    }
    if let Some(ticket) = &own.live_ticket {
        return Err(Refusal::live_ticket(ticket));
    }
    if party.members.len() >= party.max_members {
        return Err(Refusal::new(
            ErrorCode::PartyFull,
            format!(
                "the party is full: it may hold at most {} members (the matchmaking rule set's largest team, and never more than {})",
                party.max_members,
                crate::ports::MAX_PARTY_MEMBERS
            ),
        ));
    }
    let mut joined = party.clone();
    joined.members.push(new_member(player_id, own.now));
    Ok(Decided {
        change: change(own, joined, vec![(player_id.to_owned(), pointer)], Vec::new(), deps),
        reason: Some(format!("{player_id} joined")),
        left: lapsed_notes(own),
        stop_ticket: None,
    })
}

/// `leaveParty` (and a member whose grace ran out at `$disconnect` time): leaving a party that is
/// matchmaking cancels its ticket for everyone.
pub fn decide_leave(own: &Own, player_id: &str, why: &str, deps: &Deps) -> Result<Decided, Refusal> {
    let mut party = own.party.clone();
    party.members.retain(|m| m.player_id != player_id);
    hand_on_leadership(&mut party);
    let mut reason = format!("{player_id} {why}");
    if own.live_ticket.is_some() {
        reason.push_str("; matchmaking was cancelled for the whole party");
    }
    let mut left = lapsed_notes(own);
    left.push((player_id.to_owned(), format!("you {why}")));
    Ok(Decided {
        change: change(own, party, Vec::new(), vec![player_id.to_owned()], deps),
        reason: Some(reason),
        left,
        stop_ticket: own.live_ticket.clone(),
    })
}

/// `kickFromParty`: only the leader, only a member, never while matchmaking.
pub fn decide_kick(own: &Own, caller: &str, target: &str, deps: &Deps) -> Result<Decided, Refusal> {
    if own.party.leader_id != caller {
        return Err(Refusal::new(ErrorCode::Forbidden, "only the party leader can remove members"));
    }
    if target == caller {
        return Err(Refusal::new(ErrorCode::InvalidRequest, "the leader cannot remove themselves: use leaveParty"));
    }
    if !own.party.is_member(target) {
        return Err(Refusal::new(ErrorCode::NotFound, format!("{target} is not a member of your party")));
    }
    if let Some(ticket) = &own.live_ticket {
        return Err(Refusal::live_ticket(ticket));
    }
    let mut party = own.party.clone();
    party.members.retain(|m| m.player_id != target);
    let mut left = lapsed_notes(own);
    left.push((target.to_owned(), "the party leader removed you".to_owned()));
    Ok(Decided {
        change: change(own, party, Vec::new(), vec![target.to_owned()], deps),
        reason: Some(format!("the leader removed {target}")),
        left,
        stop_ticket: None,
    })
}

/// `setReady`: a member's readiness and their own latencies for the ticket.
pub fn decide_ready(
    own: &Own,
    caller: &str,
    ready: bool,
    latency_in_ms: Option<BTreeMap<String, u32>>,
    deps: &Deps,
) -> Result<Decided, Refusal> {
    if let Some(ticket) = &own.live_ticket {
        return Err(Refusal::live_ticket(ticket));
    }
    let mut party = own.party.clone();
    let Some(member) = party.members.iter_mut().find(|m| m.player_id == caller) else {
        return Err(not_in_a_party());
    };
    member.ready = ready;
    if let Some(latencies) = latency_in_ms {
        member.latency_in_ms = latencies;
    }
    let state = if ready { "is ready" } else { "is not ready" };
    Ok(Decided {
        change: change(own, party, Vec::new(), Vec::new(), deps),
        reason: Some(format!("{caller} {state}")),
        left: lapsed_notes(own),
        stop_ticket: None,
    })
}

/// A member's connection went away (`away = true`) or came back: they keep their place for the
/// disconnect grace; with no grace they leave at once.
pub fn decide_presence(own: &Own, player_id: &str, away: bool, deps: &Deps) -> Result<Decided, Refusal> {
    if away && deps.settings.disconnect_grace.is_zero() {
        return decide_leave(own, player_id, "disconnected", deps);
    }
    let mut party = own.party.clone();
    let Some(member) = party.members.iter_mut().find(|m| m.player_id == player_id) else {
        return Err(not_in_a_party());
    };
    if member.disconnected_at.is_some() == away && own.lapsed.is_empty() {
        return Err(Refusal::new(ErrorCode::Conflict, "nothing to change"));
    }
    member.disconnected_at = away.then_some(own.now);
    let reason = if away { format!("{player_id} disconnected") } else { format!("{player_id} is back") };
    Ok(Decided {
        change: change(own, party, Vec::new(), Vec::new(), deps),
        reason: Some(reason),
        left: lapsed_notes(own),
        stop_ticket: None,
    })
}

// ------------------------------------------------------------------------------------------------
// Reading and writing
// ------------------------------------------------------------------------------------------------

/// The party's live ticket: one that exists and has not ended, or one the leader's `matchmake`
/// is still starting.
async fn live_ticket_of(deps: &Deps, party: &PartyRecord, now: i64) -> Result<Option<String>, HandlerError> {
    let Some(ticket_id) = &party.active_ticket_id else { return Ok(None) };
    match deps.tickets.get(ticket_id, now).await? {
        Some(ticket) if !ticket.state.status.is_terminal() => Ok(Some(ticket_id.clone())),
        Some(_) => Ok(None),
        None if now - party.updated_at < MATCHMAKING_START_BOUND_MS => Ok(Some(ticket_id.clone())),
        None => Ok(None),
    }
}

/// Reads `party_id` as a change sees it, or `None` if it has ended.
async fn read_own(deps: &Deps, party_id: &str) -> Result<Option<Own>, HandlerError> {
    let now = deps.clock.now_ms();
    let Some(stored) = deps.parties.get(party_id, now).await? else { return Ok(None) };
    let grace = deps.settings.disconnect_grace.as_millis() as i64;
    let (party, lapsed) = without_lapsed(&stored, now, grace);
    let live_ticket = live_ticket_of(deps, &stored, now).await?;
    Ok(Some(Own { party, read_version: stored.version, lapsed, live_ticket, now }))
}

/// The party the player is in: their pointer names a live party that lists them.
pub async fn current_party(deps: &Deps, player_id: &str) -> Result<Option<PartyRecord>, HandlerError> {
    let Some(party_id) = deps.parties.party_of(player_id).await? else { return Ok(None) };
    let party = deps.parties.get(&party_id, deps.clock.now_ms()).await?;
    Ok(party.filter(|p| p.is_member(player_id)))
}

/// Reads the caller's party, decides, writes; after a lost race, reads and decides again. The
/// outcome is pushed: `PartyUpdated` to every member, `PartyLeft` to whoever left, or the
/// refusal to the caller.
async fn change_party(
    deps: &Deps,
    caller: &Caller,
    party_id: &str,
    mut decide: impl FnMut(&Own) -> Result<Decided, Refusal>,
) -> Result<(), HandlerError> {
    for _ in 0..MAX_WRITE_ATTEMPTS {
        let Some(own) = read_own(deps, party_id).await? else {
            return refuse(deps, caller, not_in_a_party()).await;
        };
        let decided = match decide(&own) {
            Ok(decided) => decided,
            Err(refusal) => return refuse(deps, caller, refusal).await,
        };
        match deps.parties.apply(&decided.change).await {
            Ok(()) => return announce(deps, &decided, None).await,
            Err(StoreError::ConditionFailed) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(StoreError::ConditionFailed.into())
}

async fn refuse(deps: &Deps, caller: &Caller, refusal: Refusal) -> Result<(), HandlerError> {
    push_to(deps, &caller.connection_id, &caller.player_id, &refusal.push()).await
}

/// What every member sees of the party.
pub fn party_updated(party: &PartyRecord, reason: Option<String>) -> Push {
    Push::PartyUpdated {
        party_id: party.party_id.clone(),
        leader_id: party.leader_id.clone(),
        members: party
            .members
            .iter()
            .map(|m| PartyMemberView {
                player_id: m.player_id.clone(),
                ready: m.ready,
                connected: m.disconnected_at.is_none(),
            })
            .collect(),
        invite_code: party.invite_code.clone(),
        max_members: u32::try_from(party.max_members).unwrap_or(u32::MAX),
        ticket_id: party.active_ticket_id.clone(),
        reason,
    }
}

/// Tells everyone (but `skip`) about a written change, and stops the ticket it cancels. One
/// member's failed push does not keep the others from theirs.
async fn announce(deps: &Deps, decided: &Decided, skip: Option<&str>) -> Result<(), HandlerError> {
    let party = &decided.change.party;
    if let Some(ticket_id) = &decided.stop_ticket {
        // The MatchmakingCancelled event that follows reaches every member of the ticket.
        if let Err(e) = deps.matchmaker.stop_matchmaking(ticket_id).await {
            tracing::warn!(ticket_id, error = %e, "StopMatchmaking for a party member leaving failed");
        }
    }
    for (player_id, reason) in &decided.left {
        let push = Push::PartyLeft { party_id: party.party_id.clone(), reason: reason.clone() };
        if let Err(e) = push_to_player(deps, player_id, &push).await {
            tracing::warn!(player_id, error = %e, "PartyLeft not delivered");
        }
    }
    if matches!(decided.change.write, PartyWrite::Delete { .. }) {
        return Ok(());
    }
    let update = party_updated(party, decided.reason.clone());
    for member in party.members.iter().filter(|m| Some(m.player_id.as_str()) != skip) {
        if let Err(e) = push_to_player(deps, &member.player_id, &update).await {
            tracing::warn!(player_id = member.player_id, error = %e, "PartyUpdated not delivered");
        }
    }
    Ok(())
}

/// The caller's party for an action that may name it: `None` (and the caller told) when the
/// caller is in no party or `named` is not theirs.
async fn own_party_id(deps: &Deps, caller: &Caller, named: Option<&str>) -> Result<Option<String>, HandlerError> {
    let current = current_party(deps, &caller.player_id).await?;
    match current {
        Some(party) if named.is_none_or(|n| n == party.party_id) => Ok(Some(party.party_id)),
        _ => {
            refuse(deps, caller, not_in_a_party()).await?;
            Ok(None)
        }
    }
}

// ------------------------------------------------------------------------------------------------
// Routes
// ------------------------------------------------------------------------------------------------

/// `createParty`: a new party led by the caller, who must be in none.
pub async fn create_party(
    caller: Caller,
    action: ClientAction,
    deps: &Deps,
) -> Result<ApiGatewayProxyResponse, HandlerError> {
    let ClientAction::CreateParty {} = action else { return Err(unexpected_action("createParty", &action)) };
    for _ in 0..MAX_WRITE_ATTEMPTS {
        let now = deps.clock.now_ms();
        let pointer = deps.parties.party_of(&caller.player_id).await?;
        if let Some(current) = &pointer
            && let Some(party) = deps.parties.get(current, now).await?
            && party.is_member(&caller.player_id)
        {
            let refusal = Refusal::new(ErrorCode::Conflict, "you are already in a party: leave it first");
            refuse(deps, &caller, refusal).await?;
            return Ok(ok());
        }
        let party = PartyRecord {
            party_id: format!("party-{}", uuid::Uuid::new_v4()),
            leader_id: caller.player_id.clone(),
            members: vec![new_member(&caller.player_id, now)],
            invite_code: invite_code(),
            invite_expires_at: (now + deps.settings.invite_ttl.as_millis() as i64) / 1000,
            max_members: deps.settings.max_party_members,
            active_ticket_id: None,
            version: 1,
            created_at: now,
            updated_at: now,
            expires_at: (now + deps.settings.party_ttl.as_millis() as i64) / 1000,
        };
        let change = PartyChange {
            party,
            write: PartyWrite::Create,
            joining: vec![(caller.player_id.clone(), pointer)],
            leaving: Vec::new(),
        };
        match deps.parties.apply(&change).await {
            Ok(()) => {
                let push = party_updated(&change.party, Some(format!("{} created the party", caller.player_id)));
                push_to(deps, &caller.connection_id, &caller.player_id, &push).await?;
                return Ok(ok());
            }
            Err(StoreError::ConditionFailed) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(StoreError::ConditionFailed.into())
}

/// An unguessable invite code: 26 characters of base 32 from 128 random bits (two v4 UUIDs'
/// random bits), easy to read out and type.
fn invite_code() -> String {
    const ALPHABET: &[u8; 32] = b"ABCDEFGHJKMNPQRSTVWXYZ0123456789";
    let random = uuid::Uuid::new_v4().as_u128() ^ (uuid::Uuid::new_v4().as_u128() << 6);
    (0..26).map(|i| ALPHABET[((random >> (i * 5)) & 31) as usize] as char).collect()
}

/// `joinParty {inviteCode}`: the same answer for an unknown and an expired code, and at most
/// `invite_lookups_per_window` lookups per connection per window.
pub async fn join_party(
    caller: Caller,
    action: ClientAction,
    deps: &Deps,
) -> Result<ApiGatewayProxyResponse, HandlerError> {
    let ClientAction::JoinParty { invite_code } = action else { return Err(unexpected_action("joinParty", &action)) };
    let now = deps.clock.now_ms();
    let window_ms = INVITE_LOOKUP_WINDOW.as_millis() as i64;
    let lookups = deps.parties.count_invite_lookup(&caller.connection_id, now - now.rem_euclid(window_ms)).await?;
    if lookups > deps.settings.invite_lookups_per_window {
        let message = format!(
            "too many invite codes tried: at most {} per {} s on one connection",
            deps.settings.invite_lookups_per_window,
            INVITE_LOOKUP_WINDOW.as_secs()
        );
        refuse(deps, &caller, Refusal::new(ErrorCode::RateLimited, message)).await?;
        return Ok(ok());
    }
    let Some(party) = deps.parties.find_by_invite(&invite_code, now).await? else {
        let refusal = Refusal::new(ErrorCode::NotFound, "no party has that invite code, or it has expired");
        refuse(deps, &caller, refusal).await?;
        return Ok(ok());
    };
    let pointer = deps.parties.party_of(&caller.player_id).await?;
    if let Some(current) = &pointer
        && current != &party.party_id
        && deps.parties.get(current, now).await?.is_some_and(|p| p.is_member(&caller.player_id))
    {
        let refusal = Refusal::new(ErrorCode::Conflict, "you are already in another party: leave it first");
        refuse(deps, &caller, refusal).await?;
        return Ok(ok());
    }
    let player_id = caller.player_id.clone();
    change_party(deps, &caller, &party.party_id, |own| decide_join(own, &player_id, pointer.clone(), deps)).await?;
    Ok(ok())
}

/// `leaveParty`.
pub async fn leave_party(
    caller: Caller,
    action: ClientAction,
    deps: &Deps,
) -> Result<ApiGatewayProxyResponse, HandlerError> {
    let ClientAction::LeaveParty { party_id } = action else { return Err(unexpected_action("leaveParty", &action)) };
    let Some(party_id) = own_party_id(deps, &caller, party_id.as_deref()).await? else { return Ok(ok()) };
    let player_id = caller.player_id.clone();
    change_party(deps, &caller, &party_id, |own| {
        if !own.party.is_member(&player_id) {
            return Err(not_in_a_party());
        }
        decide_leave(own, &player_id, "left the party", deps)
    })
    .await?;
    Ok(ok())
}

/// `kickFromParty {playerId}`.
pub async fn kick_from_party(
    caller: Caller,
    action: ClientAction,
    deps: &Deps,
) -> Result<ApiGatewayProxyResponse, HandlerError> {
    let ClientAction::KickFromParty { player_id, party_id } = action else {
        return Err(unexpected_action("kickFromParty", &action));
    };
    let Some(party_id) = own_party_id(deps, &caller, party_id.as_deref()).await? else { return Ok(ok()) };
    let leader = caller.player_id.clone();
    change_party(deps, &caller, &party_id, |own| decide_kick(own, &leader, &player_id, deps)).await?;
    Ok(ok())
}

/// `setReady {ready, latencyInMs?}`.
pub async fn set_ready(
    caller: Caller,
    action: ClientAction,
    deps: &Deps,
) -> Result<ApiGatewayProxyResponse, HandlerError> {
    let ClientAction::SetReady { ready, latency_in_ms, party_id } = action else {
        return Err(unexpected_action("setReady", &action));
    };
    let Some(party_id) = own_party_id(deps, &caller, party_id.as_deref()).await? else { return Ok(ok()) };
    let player_id = caller.player_id.clone();
    change_party(deps, &caller, &party_id, |own| decide_ready(own, &player_id, ready, latency_in_ms.clone(), deps))
        .await?;
    Ok(ok())
}

/// At `$disconnect` of a player's current connection (`away`) and at `$connect`: a member keeps
/// their place for the disconnect grace. Nothing is pushed to the connecting player from inside
/// their own `$connect` (API Gateway answers 410 there): only the other members hear.
pub async fn presence_changed(deps: &Deps, player_id: &str, away: bool) -> Result<(), HandlerError> {
    let Some(party) = current_party(deps, player_id).await? else { return Ok(()) };
    for _ in 0..MAX_WRITE_ATTEMPTS {
        let Some(own) = read_own(deps, &party.party_id).await? else { return Ok(()) };
        let Ok(decided) = decide_presence(&own, player_id, away, deps) else { return Ok(()) };
        match deps.parties.apply(&decided.change).await {
            Ok(()) => return announce(deps, &decided, (!away).then_some(player_id)).await,
            Err(StoreError::ConditionFailed) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(StoreError::ConditionFailed.into())
}

/// The leader's `matchmake`: one ticket for every member, each with their own attributes (from
/// `Players`) and latencies (from `setReady`; the leader's from this `matchmake` if it has them).
pub async fn matchmake_party(
    deps: &Deps,
    caller: &Caller,
    party_id: &str,
    latency_in_ms: Option<BTreeMap<String, u32>>,
) -> Result<(), HandlerError> {
    let ticket_id = format!("ticket-{}", uuid::Uuid::new_v4());
    let mut written = None;
    for _ in 0..MAX_WRITE_ATTEMPTS {
        let Some(own) = read_own(deps, party_id).await? else {
            return refuse(deps, caller, not_in_a_party()).await;
        };
        let mut players = BTreeMap::new();
        for member in &own.party.members {
            players.insert(member.player_id.clone(), deps.players.get(&member.player_id).await?.unwrap_or_default());
        }
        let mut busy = Vec::new();
        for (player_id, row) in &players {
            if let Some(ticket) = row.active_ticket_id.as_deref()
                && own.party.active_ticket_id.as_deref() != Some(ticket)
                && deps.tickets.get(ticket, own.now).await?.is_some_and(|t| !t.state.status.is_terminal())
            {
                busy.push(player_id.clone());
            }
        }
        let decided = match decide_matchmake(&own, &caller.player_id, &ticket_id, &busy, deps) {
            Ok(decided) => decided,
            Err(refusal) => return refuse(deps, caller, refusal).await,
        };
        match deps.parties.apply(&decided.change).await {
            Ok(()) => {
                written = Some((decided, players, own.now));
                break;
            }
            Err(StoreError::ConditionFailed) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    let Some((decided, players, now)) = written else { return Err(StoreError::ConditionFailed.into()) };
    let party = &decided.change.party;
    for (player_id, row) in &players {
        // A claim that loses a race still leaves no second live ticket: the player's newer claim
        // names a ticket that either is live (and the party's is not started) or does not exist.
        if let Err(StoreError::ConditionFailed) =
            deps.players.claim_ticket(player_id, row.active_ticket_id.as_deref(), &ticket_id).await
        {
            tracing::warn!(player_id, ticket_id, "a member's ticket changed while the party's started; not started");
            let refusal = Refusal::new(ErrorCode::Conflict, format!("{player_id} started matchmaking meanwhile"));
            return refuse(deps, caller, refusal).await;
        }
    }
    let members: Vec<Player> = party
        .members
        .iter()
        .map(|m| Player {
            player_id: m.player_id.clone(),
            attributes: players.get(&m.player_id).map(|p| p.attributes.clone()).unwrap_or_default(),
            latency_in_ms: match (&latency_in_ms, m.player_id == caller.player_id) {
                (Some(own), true) => own.clone(),
                _ => m.latency_in_ms.clone(),
            },
        })
        .collect();
    super::actions::start_ticket(deps, &ticket_id, members, now).await?;
    announce(deps, &decided, None).await
}

/// The leader's `matchmake`, decided: only the leader, never twice, every other member ready,
/// nobody on a ticket of their own.
pub fn decide_matchmake(
    own: &Own,
    caller: &str,
    ticket_id: &str,
    busy: &[String],
    deps: &Deps,
) -> Result<Decided, Refusal> {
    if own.party.leader_id != caller {
        return Err(Refusal::new(ErrorCode::Forbidden, "only the party leader can start matchmaking for the party"));
    }
    if let Some(ticket) = &own.live_ticket {
        return Err(Refusal::live_ticket(ticket));
    }
    if !busy.is_empty() {
        let message = format!("already matchmaking on their own: {}", busy.join(", "));
        return Err(Refusal::new(ErrorCode::Conflict, message));
    }
    let waiting: Vec<&str> =
        own.party.members.iter().filter(|m| m.player_id != caller && !m.ready).map(|m| m.player_id.as_str()).collect();
    if !waiting.is_empty() {
        let message = format!("not every member is ready (setReady): {}", waiting.join(", "));
        return Err(Refusal::new(ErrorCode::InvalidRequest, message));
    }
    if own.party.members.len() > deps.settings.max_party_members {
        let message = format!(
            "the party has {} members, more than the matchmaking rule set's largest team ({})",
            own.party.members.len(),
            deps.settings.max_party_members
        );
        return Err(Refusal::new(ErrorCode::PartyFull, message));
    }
    let mut change = change(own, own.party.clone(), Vec::new(), Vec::new(), deps);
    change.party.active_ticket_id = Some(ticket_id.to_owned());
    Ok(Decided { change, reason: Some("matchmaking started".into()), left: lapsed_notes(own), stop_ticket: None })
}
