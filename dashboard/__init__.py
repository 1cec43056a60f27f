"""`verifarm dashboard`: a read-only web view of the farm (campaigns, datasets, training, policies, workers).

Sits on top of every other layer and is imported by nothing but the CLI. Pages are server-rendered Jinja2
templates with server-side SVG charts; the only write is cancelling a campaign.
"""
