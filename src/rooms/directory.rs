//! Room aliases (`#name:server` names that point at a room id) and the public room
//! directory.

use ruma::{
    OwnedRoomAliasId, OwnedRoomId, OwnedServerName, RoomAliasId, RoomId, RoomVersionId, ServerName, UInt,
    UserId,
    api::federation::directory::get_public_rooms_filtered,
    directory::{Filter, PublicRoomsChunk, PublicRoomsChunkInit, RoomNetwork},
    events::StateEventType,
    room::{JoinRuleKind, RoomType},
};
use serde_json::Value as JsonValue;

use super::{Error, Result, Rooms};
use crate::storage::AliasRecord;

impl Rooms {
    /// The room a local alias points at, as stored.
    pub fn resolve_alias(&self, alias: &RoomAliasId) -> Result<Option<OwnedRoomId>> {
        Ok(self.store.alias(alias)?.map(|record| record.room_id))
    }

    /// [`Rooms::resolve_alias`], and when no room has the alias, the application service
    /// whose alias namespace it is in may create it on being asked (a bridge makes its
    /// portal rooms on demand).
    pub async fn find_alias(&self, alias: &RoomAliasId) -> Result<Option<OwnedRoomId>> {
        if let Some(room_id) = self.resolve_alias(alias)? {
            return Ok(Some(room_id));
        }
        if self.appservices.query_alias(alias).await {
            return self.resolve_alias(alias);
        }
        Ok(None)
    }

    /// The room an alias points at, with servers to join it through: ours, or as the
    /// alias's server says.
    pub async fn alias_target(&self, alias: &RoomAliasId) -> Result<(OwnedRoomId, Vec<OwnedServerName>)> {
        if alias.server_name() != self.server_name {
            return self.resolve_remote_alias(alias).await;
        }
        let room_id = self
            .find_alias(alias)
            .await?
            .ok_or_else(|| Error::NotFound(format!("no room has the alias {alias}")))?;
        Ok((room_id, vec![self.server_name.clone()]))
    }

    /// Checks that `alias` could be created here: ours, well-formed and free.
    pub fn check_alias_available(&self, alias: &RoomAliasId) -> Result<()> {
        if alias.server_name() != self.server_name {
            return Err(Error::InvalidParam(format!("{alias} does not belong to this server")));
        }
        if self.store.alias(alias)?.is_some() {
            return Err(Error::RoomInUse(format!("the alias {alias} is taken")));
        }
        Ok(())
    }

    pub async fn create_alias(&self, alias: &RoomAliasId, room_id: &RoomId, creator: &UserId) -> Result<()> {
        self.check_alias_available(alias)?;
        if let Some(service) = self.appservices.exclusive_owner_of_alias(alias)
            && !service.registered.owns_user(creator)
        {
            return Err(Error::Exclusive(format!(
                "{alias} is reserved for the application service {:?}",
                service.registered.id()
            )));
        }
        self.room(room_id)?;
        let record = AliasRecord { room_id: room_id.to_owned(), creator: creator.to_owned() };
        if !self.store.create_alias(alias, &record).await? {
            return Err(Error::RoomInUse(format!("the alias {alias} is taken")));
        }
        Ok(())
    }

    /// Checks the aliases an `m.room.canonical_alias` event adds (spec: PUT state): each must
    /// be a valid alias and, when it is ours, point to this room. Aliases of other servers
    /// cannot be checked without federation and pass; those already listed are not re-checked.
    pub fn check_canonical_alias(&self, room_id: &RoomId, content: &JsonValue) -> Result<()> {
        fn listed(content: &JsonValue) -> Result<Vec<&JsonValue>> {
            let mut aliases: Vec<&JsonValue> = content.get("alias").into_iter().collect();
            match content.get("alt_aliases") {
                None => {}
                Some(JsonValue::Array(alt)) => aliases.extend(alt),
                Some(_) => {
                    return Err(Error::InvalidParam("alt_aliases must be a list of aliases".to_owned()));
                }
            }
            Ok(aliases)
        }
        let current =
            self.state_content(room_id, &StateEventType::RoomCanonicalAlias, "")?.unwrap_or_default();
        let known = listed(&current).unwrap_or_default();
        for alias in listed(content)? {
            if known.contains(&alias) {
                continue;
            }
            let alias = alias
                .as_str()
                .and_then(|a| RoomAliasId::parse(a).ok())
                .ok_or_else(|| Error::InvalidParam(format!("{alias} is not a valid room alias")))?;
            if alias.server_name() != self.server_name {
                continue;
            }
            if self.resolve_alias(&alias)?.as_deref() != Some(room_id) {
                return Err(Error::BadAlias(format!("the alias {alias} does not point to this room")));
            }
        }
        Ok(())
    }

    /// Deletes an alias: allowed to its creator and to members who may change the room's
    /// canonical alias.
    pub async fn delete_alias(&self, alias: &RoomAliasId, user: &UserId) -> Result<()> {
        let record = self.store.alias(alias)?.ok_or_else(|| Error::NotFound(format!("no alias {alias}")))?;
        if record.creator != user
            && !self.may_send_state(&record.room_id, user, &StateEventType::RoomCanonicalAlias)?
        {
            return Err(Error::Forbidden(
                "only the alias's creator or a room moderator may delete it".to_owned(),
            ));
        }
        self.store.delete_alias(alias).await?;
        Ok(())
    }

    pub fn room_aliases(&self, room_id: &RoomId) -> Result<Vec<OwnedRoomAliasId>> {
        self.room(room_id)?;
        Ok(self.store.room_aliases(room_id)?)
    }

    /// Publishes or unpublishes a room: for members who may change its canonical alias.
    pub async fn set_published(&self, room_id: &RoomId, user: &UserId, published: bool) -> Result<()> {
        self.room(room_id)?;
        if !self.may_send_state(room_id, user, &StateEventType::RoomCanonicalAlias)? {
            return Err(Error::Forbidden("only room moderators may change its directory listing".to_owned()));
        }
        self.store.set_published(room_id, published).await?;
        Ok(())
    }

    /// Publishes a room without a permission check (room creation).
    pub(super) async fn publish(&self, room_id: &RoomId) -> Result<()> {
        Ok(self.store.set_published(room_id, true).await?)
    }

    pub fn is_published(&self, room_id: &RoomId) -> Result<bool> {
        self.room(room_id)?;
        Ok(self.store.is_published(room_id)?)
    }

    /// Rooms whose members anyone may find in the user directory: those with a `public`
    /// join rule or `world_readable` history (spec: `/user_directory/search`), and those
    /// published in the room directory.
    pub fn rooms_open_to_everyone(&self) -> Result<Vec<OwnedRoomId>> {
        let published: std::collections::BTreeSet<OwnedRoomId> =
            self.store.published_rooms()?.into_iter().collect();
        let mut open = Vec::new();
        for room_id in self.store.room_ids()? {
            let Some(room) = self.store.room(&room_id)? else { continue };
            let state = |kind: &str, field: &str| -> Result<Option<String>> {
                let Some(id) = self.store.current_state_event(&room, kind, "")? else { return Ok(None) };
                Ok(self.pdu(&id)?.and_then(|pdu| pdu.content_json()[field].as_str().map(str::to_owned)))
            };
            if published.contains(&room_id)
                || state("m.room.join_rules", "join_rule")?.as_deref() == Some("public")
                || state("m.room.history_visibility", "history_visibility")?.as_deref()
                    == Some("world_readable")
            {
                open.push(room_id);
            }
        }
        Ok(open)
    }

    /// Published rooms that pass the filter — name, topic or alias containing its search
    /// term (case-insensitive), of one of its room types (v1.4; none: any type) — most
    /// joined members first.
    pub fn public_rooms(&self, filter: &Filter) -> Result<Vec<RoomSummary>> {
        let search = filter.generic_search_term.as_deref().map(str::to_lowercase).filter(|s| !s.is_empty());
        let mut rooms = Vec::new();
        for room_id in self.store.published_rooms()? {
            let summary = self.summary(&room_id)?;
            let matches = search.as_ref().is_none_or(|term| {
                [&summary.name, &summary.topic, &summary.canonical_alias]
                    .into_iter()
                    .flatten()
                    .any(|text| text.to_lowercase().contains(term.as_str()))
            });
            let of_type = filter.room_types.is_empty()
                || filter.room_types.iter().any(|wanted| wanted.as_str() == summary.room_type.as_deref());
            if matches && of_type {
                rooms.push(summary);
            }
        }
        rooms.sort_by(|a, b| b.joined_members.cmp(&a.joined_members).then_with(|| a.room_id.cmp(&b.room_id)));
        Ok(rooms)
    }

    /// One page of the public room directory of this server, or of another one (asked over
    /// federation).
    pub async fn directory_page(
        &self,
        server: Option<&ServerName>,
        filter: &Filter,
        limit: Option<UInt>,
        since: Option<&str>,
    ) -> Result<PublicRoomsPage> {
        match server {
            Some(server) if server != self.server_name => {
                self.remote_directory_page(server, filter, limit, since).await
            }
            _ => self.public_rooms_page(filter, limit, since),
        }
    }

    async fn remote_directory_page(
        &self,
        server: &ServerName,
        filter: &Filter,
        limit: Option<UInt>,
        since: Option<&str>,
    ) -> Result<PublicRoomsPage> {
        let mut request = get_public_rooms_filtered::v1::Request::new();
        request.limit = limit;
        request.since = since.map(str::to_owned);
        request.filter = filter.clone();
        request.room_network = RoomNetwork::Matrix;
        let response = self
            .federation
            .client
            .send(server, request)
            .await
            .map_err(|e| Error::Federation(format!("the room directory of {server}: {e}")))?;
        Ok(PublicRoomsPage {
            total: response
                .total_room_count_estimate
                .unwrap_or_else(|| UInt::new_saturating(response.chunk.len() as u64)),
            chunk: response.chunk,
            next_batch: response.next_batch,
            prev_batch: response.prev_batch,
        })
    }

    /// One page of [`Rooms::public_rooms`] in the wire format; `since` is an offset this
    /// server handed out as `next_batch` or `prev_batch`.
    pub fn public_rooms_page(
        &self,
        filter: &Filter,
        limit: Option<UInt>,
        since: Option<&str>,
    ) -> Result<PublicRoomsPage> {
        let rooms = self.public_rooms(filter)?;
        let count = rooms.len();
        let offset = match since {
            Some(token) => token
                .parse::<usize>()
                .map_err(|_| Error::InvalidParam("since is not a token from this server".to_owned()))?,
            None => 0,
        };
        let limit = limit.map_or(usize::MAX, |l| usize::try_from(l).unwrap_or(usize::MAX)).max(1);
        let end = offset.saturating_add(limit).min(count);
        let chunk = rooms.into_iter().skip(offset).take(limit).map(RoomSummary::into_chunk).collect();
        Ok(PublicRoomsPage {
            chunk,
            next_batch: (end < count && end > offset).then(|| end.to_string()),
            prev_batch: (offset > 0).then(|| offset.saturating_sub(limit).to_string()),
            total: UInt::new_saturating(count as u64),
        })
    }

    /// What the directory and the space hierarchy show about a room, read from its
    /// current state.
    pub fn summary(&self, room_id: &RoomId) -> Result<RoomSummary> {
        let room = self.room(room_id)?;
        let content = |kind: StateEventType| {
            self.current_state_pdu(&room, &kind, "").map(|pdu| pdu.content_json()).unwrap_or_default()
        };
        let text = |content: &JsonValue, key: &str| content[key].as_str().map(str::to_owned);
        let (name, topic) = (content(StateEventType::RoomName), content(StateEventType::RoomTopic));
        let alias = content(StateEventType::RoomCanonicalAlias);
        let avatar = content(StateEventType::RoomAvatar);
        let join_rules = content(StateEventType::RoomJoinRules);
        let create = content(StateEventType::RoomCreate);
        let encryption = content(StateEventType::RoomEncryption);
        // Only `m.room_membership` conditions name rooms.
        let allowed_room_ids = join_rules["allow"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|condition| condition["type"] == "m.room_membership")
            .filter_map(|condition| condition["room_id"].as_str().and_then(|id| RoomId::parse(id).ok()))
            .collect();
        Ok(RoomSummary {
            room_id: room_id.to_owned(),
            name: text(&name, "name"),
            topic: text(&topic, "topic"),
            canonical_alias: text(&alias, "alias"),
            avatar_url: text(&avatar, "url"),
            join_rule: text(&join_rules, "join_rule"),
            allowed_room_ids,
            room_type: text(&create, "type"),
            world_readable: content(StateEventType::RoomHistoryVisibility)["history_visibility"]
                == "world_readable",
            guest_can_join: content(StateEventType::RoomGuestAccess)["guest_access"] == "can_join",
            encryption: text(&encryption, "algorithm"),
            version: room.version.clone(),
            joined_members: self.member_view(&room)?.joined().count() as u64,
        })
    }
}

/// A room as the directory lists it.
#[derive(Debug, Clone)]
pub struct RoomSummary {
    pub room_id: OwnedRoomId,
    pub name: Option<String>,
    pub topic: Option<String>,
    pub canonical_alias: Option<String>,
    pub avatar_url: Option<String>,
    pub join_rule: Option<String>,
    /// The rooms whose members may join a restricted room.
    pub allowed_room_ids: Vec<OwnedRoomId>,
    pub room_type: Option<String>,
    pub world_readable: bool,
    pub guest_can_join: bool,
    /// The encryption algorithm, in an encrypted room.
    pub encryption: Option<String>,
    pub version: RoomVersionId,
    pub joined_members: u64,
}

impl RoomSummary {
    fn into_chunk(self) -> PublicRoomsChunk {
        let mut chunk: PublicRoomsChunk = PublicRoomsChunkInit {
            num_joined_members: UInt::new_saturating(self.joined_members),
            room_id: self.room_id,
            world_readable: self.world_readable,
            guest_can_join: self.guest_can_join,
        }
        .into();
        chunk.name = self.name;
        chunk.topic = self.topic;
        chunk.canonical_alias = self.canonical_alias.and_then(|a| a.try_into().ok());
        chunk.avatar_url = self.avatar_url.map(Into::into);
        chunk.join_rule = self.join_rule.as_deref().map_or(JoinRuleKind::Public, JoinRuleKind::from);
        chunk.room_type = self.room_type.as_deref().map(RoomType::from);
        chunk
    }
}

/// Moves a [`PublicRoomsPage`] into any of the four `publicRooms` responses (client and
/// federation, GET and POST): they have the same fields but no common type.
#[macro_export]
macro_rules! public_rooms_response {
    ($response:expr, $page:expr) => {{
        let mut response = $response;
        let page: $crate::rooms::PublicRoomsPage = $page;
        response.chunk = page.chunk;
        response.next_batch = page.next_batch;
        response.prev_batch = page.prev_batch;
        response.total_room_count_estimate = Some(page.total);
        response
    }};
}

/// One page of a room directory, as the client and federation APIs return it.
pub struct PublicRoomsPage {
    pub chunk: Vec<PublicRoomsChunk>,
    pub next_batch: Option<String>,
    pub prev_batch: Option<String>,
    pub total: UInt,
}
