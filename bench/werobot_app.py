"""The peer: WeRoBot 1.13.1 answering the same keyword with the same article card (for bench/ only)."""

import os

import werobot

robot = werobot.WeRoBot(token=os.environ["WECHAT_TOKEN"], enable_session=False)


@robot.filter("微博")
def weibo(message):
    return [[
        "微博热门 · 今日精选",
        "点开看看今天大家都在聊什么。",
        "https://h5.sinaimg.cn/upload/2015/09/25/3/timeline_card_small_photo_default.png",
        "https://m.weibo.cn/",
    ]]


application = robot.wsgi
