"""The ceiling: a bare WSGI function returning a fixed reply, no parsing, no checks (for bench/ only)."""

REPLY = (
    b"<xml><ToUserName><![CDATA[oFollower]]></ToUserName><FromUserName><![CDATA[gh_10f6c3c3ac5a]]></FromUserName>"
    b"<CreateTime>1409735668</CreateTime><MsgType><![CDATA[text]]></MsgType><Content><![CDATA[ok]]></Content></xml>"
)


def application(environ, start_response):
    environ["wsgi.input"].read()
    start_response("200 OK", [("Content-Type", "application/xml; charset=utf-8"), ("Content-Length", str(len(REPLY)))])
    return [REPLY]
