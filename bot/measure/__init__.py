"""`folio bench` and `folio eval`: measuring Folio through the paths its users take.

Nothing here reaches into the answer path's private parts: the engine is built and called
through its public interface, and answers go through the real `BotCore`, queue and worker.
"""
