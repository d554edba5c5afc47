"""A local stand-in for the WeChat platform: the fake API server and the simulator of WeChat's pushes."""
