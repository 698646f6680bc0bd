"""The formats of the Cloud Elements instance body: SimpleDateFormat dates, URL templates and CEQL.

Instance validation compiles them when an instance is configured, and the pollers and sources run
what it compiled, so they sit here, below both, and imports run one way.
"""
