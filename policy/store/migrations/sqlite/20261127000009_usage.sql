-- Usage per app: visits per app, UTC day and person ('' for anonymous visits), added up by
-- every gateway replica's periodic flush (an upsert that adds its counts). The unique
-- people of a day are its rows with a person; "last opened by" is the latest last_at.
CREATE TABLE usage_visits (
    app     TEXT   NOT NULL,
    day     BIGINT NOT NULL,
    person  TEXT   NOT NULL,
    visits  BIGINT NOT NULL,
    last_at BIGINT NOT NULL,
    PRIMARY KEY (app, day, person)
);
CREATE INDEX usage_visits_day ON usage_visits (day);
