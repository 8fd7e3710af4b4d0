-- Rooms for the relay edge function (CONTRACT.md "Rooms", RELAY_ROOMS=database).
-- Apply with `supabase db push`. Runs unchanged on Supabase and on plain PostgreSQL 15+
-- (with Supabase's roles and auth.jwt()/auth.uid()). The relay connects as the role that applied
-- this migration (postgres, through the transaction pooler) and owns everything here.
--
-- Who may join a room is the answer of relay.room_access(room), which the relay runs AS THE USER:
-- in one transaction it sets role `authenticated` and `request.jwt.claims` to the token's claims
-- (as PostgREST does, so auth.uid() and auth.jwt() work), then selects relay.room_access('<room>').
-- 'write': join, send and publish; 'read': join and listen; anything else (null): 403
-- room_forbidden. The relay may reuse an answer for up to 30 s, so a revoked member can keep
-- listening that long.

create schema if not exists relay;

-- Who belongs to the rooms that are neither public:<x> nor user:<uid>[:<x>] (with the default
-- relay.room_access). No API role writes it: write it from SQL the app controls, as the owner:
-- a migration, a trigger on the app's own tables, or a security definer function of the app's
-- that checks its own rules first. For instance, to keep a team's room in step with a team table:
--
--   create function public.sync_team_room() returns trigger
--   language plpgsql security definer set search_path = '' as $$
--   begin
--     if tg_op in ('DELETE', 'UPDATE') then
--       delete from relay.room_members
--         where room = 'team:' || old.team_id and user_id = old.user_id;
--     end if;
--     if tg_op in ('INSERT', 'UPDATE') then
--       insert into relay.room_members (room, user_id, access)
--         values ('team:' || new.team_id, new.user_id,
--                 case when new.role = 'viewer' then 'read' else 'write' end)
--         on conflict (room, user_id) do update set access = excluded.access;
--     end if;
--     return null;
--   end $$;
--   create trigger team_room after insert or update or delete on public.team_members
--     for each row execute function public.sync_team_room();
create table relay.room_members (
  -- The relay accepts room names of 1-100 characters of [A-Za-z0-9_.:-]: a row for any other
  -- name could never be used, so it is refused here rather than ignored there.
  room text not null check (room ~ '^[A-Za-z0-9_.:-]{1,100}$'),
  user_id uuid not null,
  access text not null check (access in ('read', 'write')),
  primary key (room, user_id)
);

-- A user's memberships (the policy below, and an app listing "my rooms").
create index room_members_user_id on relay.room_members (user_id);

comment on table relay.room_members is
  'Members of relay rooms: access ''read'' (join and listen) or ''write'' (also send); read by relay.room_access(room).';

-- The default access rule. An app replaces it with its own (same name and signature) in a
-- migration of its own, applied after this one:
--
--   create or replace function relay.room_access(room text) returns text
--   language plpgsql stable security definer set search_path = '' as $$
--   begin
--     -- Everyone signed in may listen to announcements; only admins may post there.
--     if room = 'announcements' then
--       return case when auth.jwt() -> 'app_metadata' ->> 'role' = 'admin'
--                   then 'write' else 'read' end;
--     end if;
--     -- A document's room: whoever may edit the document (the app's own table).
--     if starts_with(room, 'doc:') then
--       return (select case when d.can_edit then 'write' else 'read' end
--                 from public.document_access d
--                 where d.document_id::text = substr(room, 5) and d.user_id = auth.uid());
--     end if;
--     return null;
--   end $$;
--
-- What to keep when replacing it:
-- - The signature: (room text) returns text. Another one is another function (the relay would
--   go on calling this one); changing the return type needs `drop function` first, which also
--   drops the grants below: grant them again.
-- - `create or replace` keeps the owner and the grants (execute: authenticated only), but takes
--   the new function's attributes: write `security definer set search_path = ''` again when the
--   function must read what the user may not (as this one reads relay.room_members whatever its
--   policies), or leave security definer out to let the app's RLS policies decide, as the user.
-- - The user is auth.uid() (Supabase Auth) or auth.jwt() ->> 'sub'; with no signed-in user
--   (no `sub`) answer null. The function runs once per join (then up to 30 s of reuse): keep it
--   to indexed lookups.
--
-- Why security definer here: the function reads relay.room_members, whose policy lets a user
-- read only their own rows, and which an app may well lock down further (drop the policy,
-- revoke select). Running as the owner, the answer does not depend on those, and the function
-- itself only ever looks up the caller's own row. Hence also: a fixed, empty search_path (every
-- name below is schema-qualified), and execute granted to `authenticated` alone (the role the
-- relay runs it as), never to PUBLIC or anon.
--
-- Who is signed in: the token's `sub` (auth.jwt() ->> 'sub', which is auth.uid() as text for a
-- Supabase Auth user). Reading it as text, rather than through auth.uid(), keeps a third-party
-- auth subject that is not a UUID from failing the whole call: such a user is signed in, owns
-- user:<sub> rooms, and has no room_members rows (user_id is a uuid).
create function relay.room_access(room text)
returns text
language plpgsql
stable
security definer
set search_path = ''
as $$
declare
  v_sub text := nullif(auth.jwt() ->> 'sub', '');
  v_user uuid;
  v_access text;
begin
  if v_sub is null or room is null then
    return null;
  end if;
  -- public:<x>: every signed-in user reads and writes.
  if starts_with(room, 'public:') then
    return 'write';
  end if;
  -- user:<uid> and user:<uid>:<x>: that user alone; nobody else, whatever room_members says.
  if starts_with(room, 'user:') then
    if room = 'user:' || v_sub or starts_with(room, 'user:' || v_sub || ':') then
      return 'write';
    end if;
    return null;
  end if;
  -- Any other room: the caller's row in relay.room_members, if any.
  if v_sub !~* '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$' then
    return null;
  end if;
  v_user := v_sub::uuid;
  select m.access into v_access
    from relay.room_members m
    where m.room = room_access.room and m.user_id = v_user;
  return v_access;
end;
$$;

comment on function relay.room_access(text) is
  'The access of the signed-in user (request.jwt.claims) to a relay room: ''write'', ''read'' or null. Replace it with create or replace to apply the app''s own rules.';

-- Row level security: a signed-in user reads their own memberships; nobody but the owner writes.
alter table relay.room_members enable row level security;

create policy "users read their own room memberships" on relay.room_members
  for select to authenticated using (user_id = (select auth.uid()));

-- Supabase grants the API roles broad default privileges (and PostgreSQL lets PUBLIC execute new
-- functions): take everything back, then grant signed-in users what they need.
revoke all on relay.room_members from public, anon, authenticated, service_role;
revoke all on function relay.room_access(text) from public, anon, authenticated, service_role;

grant usage on schema relay to authenticated;
grant select on relay.room_members to authenticated;
grant execute on function relay.room_access(text) to authenticated;

-- No browser may join or send on the relay's own Realtime channels (relay:room:<room>), through
-- which instances carry rooms between them: a browser there would read every member's messages
-- and could forge them, past relay.room_access and every limit of the relay. Realtime decides
-- who may join a private channel by selecting (read) and inserting (write) rows of
-- realtime.messages as the user, with `realtime.topic` set to the channel's topic; an app's own
-- policies on that table are permissive, so this one is restrictive: it holds whatever they
-- allow. It checks both the topic Realtime sets and the row's own topic, so reading stored
-- messages of those channels by other means is refused too. The relay itself joins with the
-- project's secret key (service_role, which bypasses RLS), so this policy never applies to it.
--
-- Public channels (private: false) of the same name are other channels: Realtime never mixes
-- them with private ones. realtime.messages exists on every Supabase project whose Realtime has
-- started; on a database without it (plain PostgreSQL) there is nothing to protect and the block
-- does nothing but say so. It may be run again as it is (say, in the SQL editor of a project
-- whose Realtime created the table after this migration): it adds the policy only when missing.
do $$
begin
  if to_regclass('realtime.messages') is null then
    raise notice 'relay rooms: no realtime.messages here; no policy on relay:room:* channels';
  elsif not exists (
    select 1 from pg_catalog.pg_policies p
      where p.schemaname = 'realtime' and p.tablename = 'messages'
        and p.policyname = 'relay rooms: no browser on relay:room:* channels'
  ) then
    create policy "relay rooms: no browser on relay:room:* channels" on realtime.messages
      as restrictive
      for all
      to anon, authenticated
      using (
        not starts_with(topic, 'relay:room:')
        and not starts_with(coalesce((select realtime.topic()), ''), 'relay:room:')
      )
      with check (
        not starts_with(topic, 'relay:room:')
        and not starts_with(coalesce((select realtime.topic()), ''), 'relay:room:')
      );
  end if;
end
$$;
