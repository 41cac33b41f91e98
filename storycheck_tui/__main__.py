from storycheck_tui.cli import main

raise SystemExit(main())
