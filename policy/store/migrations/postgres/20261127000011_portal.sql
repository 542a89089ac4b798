-- The App Portal: each app's tags and thumbnail (shown on its card), the Dash token header
-- option for store apps, favourites per person, and an index for "recently opened" (read
-- from usage_visits by person).
ALTER TABLE apps ADD COLUMN tags_json TEXT NOT NULL DEFAULT '[]';
ALTER TABLE apps ADD COLUMN thumbnail TEXT NOT NULL DEFAULT '';
ALTER TABLE apps ADD COLUMN dash_token INTEGER NOT NULL DEFAULT 0;
CREATE TABLE portal_favourites (
    person     TEXT   NOT NULL,
    app        TEXT   NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (person, app)
);
CREATE INDEX usage_visits_person ON usage_visits (person, day);
