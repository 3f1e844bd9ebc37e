from ferrolib.cli import main

raise SystemExit(main())
