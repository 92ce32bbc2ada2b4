"""The command line (`python -m rlaif ...`: `main.main`), its commands by topic (`runs`, `judging`,
`models`, `checks`) and `doctor`. May import every package."""
