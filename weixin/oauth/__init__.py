"""Web authorization (网页授权): a follower approves in WeChat and sees their profile at /me.

`oauth.routes` holds the web.py pages, `oauth.authorize` the pure URL and state logic,
`oauth.sns_client` the calls to WeChat's /sns endpoints, `oauth.sessions` the signed cookies and Redis.
"""
