-- depends: 0013.user_uuids

-- Change events carry their position in the workspace's log as the CloudEvents extension attribute `position`
-- (the worker writes it from now on); the events kept from before get it too, so that every event the replay
-- API answers has one. (jsonb normalises the text: the keys' order and spacing may differ from what was
-- published, not the content.)
UPDATE events SET event = jsonb_set(event::jsonb, '{position}', to_jsonb(position))::json
WHERE NOT (event::jsonb ? 'position');
