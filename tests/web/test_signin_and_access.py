"""Dashboard sign-in, sessions, CSRF and who may open which page (Flask test client)."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import select, update

from royalties.models import ApiKey
from tests.web.conftest import Browser


def _session_data(app, visitor: Browser) -> dict:
    cookie = visitor.client.get_cookie("session")
    assert cookie is not None
    return app.session_interface.get_signing_serializer(app).loads(cookie.value)


def _revoke_keys_of(session, owner_id: str) -> None:
    session.rollback()
    session.execute(
        update(ApiKey).where(ApiKey.owner_id == owner_id).values(revoked_at=datetime.now(UTC))
    )
    session.commit()


def test_the_login_form_carries_a_csrf_token_and_anonymous_visitors_are_sent_to_it(visitor, cast):
    page = visitor.get("/dashboard/login")
    assert page.status_code == 200 and "text/html" in page.content_type
    assert visitor.token and 'name="api_key"' in page.get_data(as_text=True)
    away = visitor.get(f"/dashboard/artists/{cast.artist.id}")
    assert away.status_code == 302
    assert away.headers["Location"].endswith(
        f"/dashboard/login?next=/dashboard/artists/{cast.artist.id}"
    )


def test_an_artist_signs_in_lands_on_its_page_and_the_cookie_never_holds_the_key(
    app, visitor, cast
):
    response = visitor.sign_in(cast.artist.key)
    assert response.status_code == 302
    assert response.headers["Location"] == f"/dashboard/artists/{cast.artist.id}"
    data = _session_data(app, visitor)
    assert data["dashboard_user"]["role"] == "artist"
    assert data["dashboard_user"]["owner_id"] == cast.artist.id
    assert data["dashboard_user"]["key_id"].startswith("key")
    assert cast.artist.key not in str(data)
    page = visitor.get(response.headers["Location"])
    html = page.get_data(as_text=True)
    assert page.status_code == 200
    assert "Nina Vale" in html and "No content yet" in html and "No sales yet" in html
    assert page.headers["Cache-Control"] == "no-store"


def test_a_fan_signs_in_and_lands_on_its_fan_page(visitor, cast):
    response = visitor.sign_in(cast.fans["bob"].key)
    assert response.headers["Location"] == f"/dashboard/fans/{cast.fans['bob'].id}"
    assert visitor.get(response.headers["Location"]).status_code == 200


def test_sign_in_follows_next_only_within_the_dashboard(visitor, cast):
    admin = cast.admin.key
    target = f"/dashboard/fans/{cast.fans['ann'].id}"
    assert visitor.sign_in(admin, next=target).headers["Location"] == target
    assert visitor.post("/dashboard/logout").status_code == 302
    for evil in ("https://evil.test/", "//evil.test/dashboard/", r"/dashboard/\\evil.test"):
        assert visitor.sign_in(admin, next=evil).headers["Location"] == "/dashboard/", evil
        assert visitor.post("/dashboard/logout").status_code == 302


def test_a_wrong_key_is_refused_with_a_message_and_no_session(app, visitor, cast):
    for key in ("rk_" + "x" * 32, "not-a-key", ""):
        response = visitor.sign_in(key)
        assert response.status_code == 401
        assert "unknown or has been revoked" in response.get_data(as_text=True)
        assert "dashboard_user" not in _session_data(app, visitor)
    assert visitor.get(f"/dashboard/artists/{cast.artist.id}").status_code == 302


def test_storefront_keys_have_no_dashboard(visitor, cast):
    response = visitor.sign_in(cast.shop.key)
    assert response.status_code == 403
    assert "Storefront keys have no dashboard" in response.get_data(as_text=True)


def test_revoking_the_key_signs_the_session_out_on_the_next_request(app, visitor, cast, session):
    visitor.sign_in(cast.artist.key)
    page = f"/dashboard/artists/{cast.artist.id}"
    assert visitor.get(page).status_code == 200
    _revoke_keys_of(session, cast.artist.id)
    response = visitor.get(page)
    assert response.status_code == 302 and "/dashboard/login" in response.headers["Location"]
    assert "dashboard_user" not in _session_data(app, visitor)
    login = visitor.get(response.headers["Location"])
    assert "was revoked" in login.get_data(as_text=True)
    # and the revoked key cannot sign in again
    assert visitor.sign_in(cast.artist.key).status_code == 401


def test_sign_out_needs_the_csrf_token_and_ends_the_session(visitor, cast):
    visitor.sign_in(cast.fans["ann"].key)
    page = f"/dashboard/fans/{cast.fans['ann'].id}"
    visitor.get(page)
    assert visitor.post("/dashboard/logout", csrf=False).status_code == 400
    assert visitor.get(page).status_code == 200
    response = visitor.post("/dashboard/logout")
    assert response.status_code == 302
    assert visitor.get(page).status_code == 302


def test_posts_without_the_sessions_csrf_token_are_refused(make_visitor, visitor, cast):
    # login itself: no token, or a token from another session
    other = make_visitor()
    other.get("/dashboard/login")
    fresh = make_visitor()
    fresh.client.get("/dashboard/login")
    response = fresh.post("/dashboard/login", {"api_key": cast.artist.key}, csrf=False)
    assert response.status_code == 400
    response = fresh.post(
        "/dashboard/login", {"api_key": cast.artist.key, "csrf_token": other.token}
    )
    assert response.status_code == 400
    assert "CSRF" in response.get_data(as_text=True)
    # a signed-in artist's plan form without the token
    visitor.sign_in(cast.artist.key)
    visitor.get(f"/dashboard/artists/{cast.artist.id}")
    plan = {"rate_1": "100", "hold_days": "0"}
    url = f"/dashboard/artists/{cast.artist.id}/plan"
    assert visitor.post(url, plan, csrf=False).status_code == 400
    assert visitor.post(url, {**plan, "csrf_token": "forged"}).status_code == 400
    assert visitor.post(url, {**plan, "csrf_token": other.token}).status_code == 400


def test_a_fan_cannot_open_another_fans_page_nor_an_artist_page(visitor, cast):
    visitor.sign_in(cast.fans["ann"].key)
    for path in (
        f"/dashboard/fans/{cast.fans['bob'].id}",
        f"/dashboard/fans/{cast.fans['bob'].id}/statement.csv",
        f"/dashboard/artists/{cast.artist.id}",
    ):
        response = visitor.get(path)
        assert response.status_code == 403, path
        assert "text/html" in response.content_type
        assert "belongs to someone else" in response.get_data(as_text=True)


def test_an_artist_cannot_open_another_artists_page_nor_change_its_plan(visitor, cast, session):
    visitor.sign_in(cast.artist.key)
    visitor.get(f"/dashboard/artists/{cast.artist.id}")
    other = cast.other_artist.id
    assert visitor.get(f"/dashboard/artists/{other}").status_code == 403
    before = _versions(session, other)
    response = visitor.post(
        f"/dashboard/artists/{other}/plan", {"rate_1": "4000", "hold_days": "0"}
    )
    assert response.status_code == 403
    assert _versions(session, other) == before
    assert visitor.get(f"/dashboard/fans/{cast.fans['ann'].id}").status_code == 403


def test_an_admin_opens_any_artist_or_fan_page_by_id(visitor, cast):
    response = visitor.sign_in(cast.admin.key)
    assert response.headers["Location"] == "/dashboard/"
    home = visitor.get("/dashboard/").get_data(as_text=True)
    assert "Nina Vale" in home and "Other Artist" in home and "bob" in home
    opened = visitor.get("/dashboard/open", query_string={"artist_id": cast.other_artist.id})
    assert opened.headers["Location"] == f"/dashboard/artists/{cast.other_artist.id}"
    assert visitor.get(opened.headers["Location"]).status_code == 200
    opened = visitor.get("/dashboard/open", query_string={"fan_id": cast.fans["bob"].id})
    assert visitor.get(opened.headers["Location"]).status_code == 200
    missing = visitor.get("/dashboard/artists/art_missing")
    assert missing.status_code == 404 and "text/html" in missing.content_type


def test_the_dashboard_is_not_in_the_openapi_document(client):
    paths = client.get("/openapi.json").get_json()["paths"]
    assert not [p for p in paths if p.startswith("/dashboard") or p.startswith("/static")]


def test_static_assets_are_served_by_the_app(client):
    css = client.get("/static/dashboard.css")
    js = client.get("/static/dashboard.js")
    assert css.status_code == 200 and css.mimetype == "text/css"
    assert js.status_code == 200 and "javascript" in js.mimetype
    assert b"data-plan-form" in js.data and b"clipboard" in js.data


def _versions(session, artist_id: str) -> list[int]:
    from royalties.models import RewardPlan

    session.rollback()
    versions = list(
        session.scalars(
            select(RewardPlan.version)
            .where(RewardPlan.scope == f"artist:{artist_id}")
            .order_by(RewardPlan.version)
        )
    )
    session.rollback()
    return versions


def test_sign_in_attempts_are_rate_limited_per_address_with_a_page(engine, db_url, cast):
    """Guessing keys through the form: after RATELIMIT_LOGIN attempts from one address,
    even the right key is refused (429 page with Retry-After) until the window passes;
    the form itself and other addresses are not held back."""
    from tests.conftest import create_test_app
    from tests.web.conftest import Browser

    app = create_test_app(engine, db_url, RATELIMIT_LOGIN="3/minute")
    guesser = Browser(app)
    guesser.get("/dashboard/login")
    for n in range(3):
        assert guesser.post("/dashboard/login", {"api_key": f"rk_wrong{n}"}).status_code == 401
    refused = guesser.post("/dashboard/login", {"api_key": cast.artist.key})
    assert refused.status_code == 429
    assert refused.mimetype == "text/html" and int(refused.headers["Retry-After"]) >= 1
    assert "Too many sign-in attempts" in refused.get_data(as_text=True)
    assert guesser.get("/dashboard/login").status_code == 200  # the form is not limited

    elsewhere = Browser(app)
    elsewhere.client.environ_base["REMOTE_ADDR"] = "203.0.113.9"
    assert elsewhere.sign_in(cast.artist.key).status_code == 302
