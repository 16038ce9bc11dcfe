-- Sign-in codes (`eventgraph token --open`) already exchanged for a token: a code's id is
-- inserted once, in the database every API process shares, so a code works once whichever
-- process a browser reaches. A row outlives its code's expiry (after which the signature
-- check refuses the code anyway) and is then deleted by later exchanges.
CREATE TABLE eventgraph.sign_in_codes (
    jti          text        PRIMARY KEY CHECK (length(jti) BETWEEN 16 AND 64),
    expires_at   timestamptz NOT NULL,
    exchanged_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX sign_in_codes_expires_at ON eventgraph.sign_in_codes (expires_at);
